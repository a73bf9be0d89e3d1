"""A tiny authoritative DNS server on a loopback UDP port, answering from a dict.

    with DnsServer({"api.example.com": {"A": ["192.0.2.10"]}}) as server:
        ... options={"resolver": server.address} ...

Names it does not know get NXDOMAIN; a known name without the asked type gets
an empty NOERROR answer (NODATA). `rcodes` forces an rcode for a name, and
`silent` makes it read queries without ever answering.
"""

from __future__ import annotations

import socket
import threading
from types import TracebackType
from typing import Any

import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

TTL = 60


class DnsServer:
    def __init__(
        self,
        zone: dict[str, dict[str, list[str]]] | None = None,
        rcodes: dict[str, str] | None = None,
        host: str = "127.0.0.1",
        silent: bool = False,
    ) -> None:
        self.zone = {name.lower().rstrip("."): records for name, records in (zone or {}).items()}
        self.rcodes = {name.lower().rstrip("."): rcode for name, rcode in (rcodes or {}).items()}
        self.silent = silent
        self.queries: list[tuple[str, str]] = []
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self.sock = socket.socket(family, socket.SOCK_DGRAM)
        self.sock.bind((host, 0))
        self.sock.settimeout(0.1)
        self.host = host
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.serve, daemon=True)
        self.thread.start()

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    def serve(self) -> None:
        while not self.stop.is_set():
            try:
                wire, client = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                query = dns.message.from_wire(wire)
            except Exception:
                continue
            question = query.question[0]
            self.queries.append(
                (question.name.to_text(omit_final_dot=True), dns.rdatatype.to_text(question.rdtype))
            )
            if not self.silent:
                self.sock.sendto(self.answer(query).to_wire(), client)

    def answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        wanted = dns.rdatatype.to_text(question.rdtype)
        if name in self.rcodes:
            response.set_rcode(dns.rcode.from_text(self.rcodes[name]))
            return response
        for _hop in range(8):  # follow CNAMEs within the zone, as a resolver would
            if name not in self.zone:
                response.set_rcode(dns.rcode.NXDOMAIN)
                return response
            records = self.zone[name]
            if wanted in records:
                self.add(response, name, wanted, records[wanted])
                return response
            if "CNAME" not in records:
                return response
            self.add(response, name, "CNAME", records["CNAME"])
            name = records["CNAME"][0].lower().rstrip(".")
        return response

    @staticmethod
    def add(response: dns.message.Message, name: str, rdtype: str, values: list[str]) -> None:
        texts = [f'"{value}"' if rdtype == "TXT" else value for value in values]
        if rdtype in ("CNAME", "MX"):
            texts = [text if text.endswith(".") else text + "." for text in texts]
        rrset = dns.rrset.from_text_list(
            dns.name.from_text(name), TTL, dns.rdataclass.IN, rdtype, texts
        )
        response.answer.append(rrset)

    def close(self) -> None:
        self.stop.set()
        self.thread.join()
        self.sock.close()

    def __enter__(self) -> DnsServer:
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> Any:
        self.close()

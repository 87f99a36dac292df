"""Free loopback ports for the native stack and for anything else that needs one (the
demo's server, a test's Pushgateway): every port a service binds is free and unshared."""

from __future__ import annotations

from fraudctl.stack.native import SERVICES, free_ports, port_is_free, ports_of


def test_free_ports_for_stack_services_and_other_names() -> None:
    ports = free_ports((*SERVICES, "serve", "pushgateway"))
    assert set(ports) == {*SERVICES, "serve", "pushgateway"}
    taken = [p for name, port in ports.items() for p in ports_of(name, port)]
    assert len(taken) == len(set(taken)), "two services share a port"
    assert all(port_is_free(p) for p in taken)
    assert len(ports_of("s3", ports["s3"])) == 8  # S3 API, master, volume, filer + gRPC
    assert ports_of("serve", ports["serve"]) == [ports["serve"]]

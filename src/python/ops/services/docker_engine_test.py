from ops.services.docker_engine import _docker_rule


def test_only_dockers_iptables_lines_are_removed() -> None:
    saved = [
        "*nat",
        ":DOCKER - [0:0]",
        "-A PREROUTING -m addrtype --dst-type LOCAL -j DOCKER",
        "-A POSTROUTING -s 172.17.0.0/16 ! -o docker0 -j MASQUERADE",
        "-A POSTROUTING -s 172.18.0.0/16 ! -o br-5a1c2f -j MASQUERADE",
        "-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE",
        ":INPUT ACCEPT [0:0]",
        "COMMIT",
    ]
    assert [line for line in saved if not _docker_rule(line)] == [
        "*nat",
        "-A POSTROUTING -s 10.0.0.0/8 -o eth0 -j MASQUERADE",
        ":INPUT ACCEPT [0:0]",
        "COMMIT",
    ]

"""nodes.toml (medview.io.net.nodes): what is written is read back by tomllib, names and addresses are checked,
resolve_node takes a configured name or AE@HOST:PORT.  No network."""

from __future__ import annotations

import tomllib

import pytest

from medview.io.net import nodes
from medview.io.net.nodes import NodeConfigError


def test_the_file_lives_in_the_data_dir(medview_data_dir):
    assert nodes.nodes_path() == medview_data_dir / "nodes.toml"
    assert nodes.load_nodes().nodes == {}
    assert nodes.load_nodes().local_ae == "MEDVIEW"


def test_add_list_remove_round_trip(medview_data_dir, tmp_path):
    ca = tmp_path / 'odd "ca" \\ file.pem'  # quotes and a backslash must survive the TOML writer
    ca.write_text("-----BEGIN CERTIFICATE-----\n")
    nodes.add_node("pacs", "ORTHANC@pacs.example.org:4242")
    nodes.add_node("secure-1", "SECURE_AE@10.0.0.5:2762", tls=True, ca_file=str(ca))
    nodes.add_node("v6", "V6@[::1]:11112")
    text = nodes.nodes_path().read_text(encoding="utf-8")
    data = tomllib.loads(text)  # valid TOML for any TOML reader, not only ours
    assert data["nodes"]["secure-1"] == {"ae_title": "SECURE_AE", "host": "10.0.0.5", "port": 2762, "tls": True,
                                         "ca_file": str(ca.resolve())}
    book = nodes.load_nodes()
    assert sorted(book.nodes) == ["pacs", "secure-1", "v6"]
    assert book.nodes["pacs"].address == "ORTHANC@pacs.example.org:4242"
    assert book.nodes["pacs"].label == "pacs (ORTHANC@pacs.example.org:4242)"
    assert book.nodes["v6"].host == "::1" and book.nodes["v6"].address == "V6@[::1]:11112"
    assert book.nodes["secure-1"].ca_file == str(ca.resolve())
    assert nodes.set_local_ae("MYWS") == "MYWS"
    assert all(n.local_ae == "MYWS" for n in nodes.load_nodes().nodes.values())
    assert nodes.remove_node("pacs").name == "pacs"
    assert sorted(nodes.load_nodes().nodes) == ["secure-1", "v6"]


def test_resolve_a_name_or_an_address(medview_data_dir):
    nodes.add_node("pacs", "ORTHANC@127.0.0.1:4242")
    assert nodes.resolve_node("pacs").port == 4242
    typed = nodes.resolve_node("STORESCP@localhost:104")
    assert (typed.ae_title, typed.host, typed.port, typed.local_ae) == ("STORESCP", "localhost", 104, "MEDVIEW")
    assert typed.label == "STORESCP@localhost:104"
    with pytest.raises(NodeConfigError) as caught:
        nodes.resolve_node("pcas")
    assert str(caught.value) == "unknown node 'pcas' (configured nodes: pacs; or give AE@HOST:PORT)"


def test_no_nodes_configured_says_how_to_add_one(medview_data_dir):
    with pytest.raises(NodeConfigError, match=r"none configured \(medview pacs nodes add NAME AE@HOST:PORT\)"):
        nodes.resolve_node("pacs")


@pytest.mark.parametrize(("address", "message"), [
    ("ORTHANC@host", "is not a node address: expected AE@HOST:PORT"),
    ("ORTHANC:4242", "is not a node address"),
    ("@host:4242", "is not a node address"),
    ("ORTHANC@host:99999", "port 99999"),
    ("A_TITLE_LONGER_THAN_16@host:104", "1 to 16 characters"),
    ("BACK\\SLASH@host:104", "1 to 16 characters"),
])
def test_bad_addresses(medview_data_dir, address, message):
    with pytest.raises(NodeConfigError, match=message.replace("(", r"\(")):
        nodes.resolve_node(address)


def test_bad_names_duplicates_and_tls_options(medview_data_dir, tmp_path):
    with pytest.raises(NodeConfigError, match="node name 'my pacs' is not valid"):
        nodes.add_node("my pacs", "A@h:1")
    nodes.add_node("pacs", "A@h:1")
    with pytest.raises(NodeConfigError, match=r"node 'pacs' already exists \(A@h:1\)"):
        nodes.add_node("pacs", "B@h:2")
    assert nodes.add_node("pacs", "B@h:2", replace=True).ae_title == "B"
    with pytest.raises(NodeConfigError, match="only used with TLS"):
        nodes.add_node("x", "A@h:1", ca_file=str(tmp_path))
    with pytest.raises(NodeConfigError, match="CA file not found"):
        nodes.add_node("x", "A@h:1", tls=True, ca_file=str(tmp_path / "missing.pem"))


def test_a_damaged_file_is_one_line_naming_it(medview_data_dir):
    nodes.nodes_path().write_text("[nodes.pacs\nae_title = 'X'\n", encoding="utf-8")
    with pytest.raises(NodeConfigError) as caught:
        nodes.load_nodes()
    assert "cannot read the node list" in str(caught.value) and "nodes.toml" in str(caught.value)
    assert "\n" not in str(caught.value)
    nodes.nodes_path().write_text("[nodes.pacs]\nae_title = 'X'\n", encoding="utf-8")
    with pytest.raises(NodeConfigError, match="node 'pacs' in the node list is incomplete"):
        nodes.load_nodes()


def test_storage_scp_settings_round_trip(medview_data_dir, tmp_path):
    nodes.add_node("pacs", "ORTHANC@h:4242")
    nodes.add_node("ct", "CT_SCANNER@h:104")
    book = nodes.load_nodes()
    assert (book.listen, book.listen_port, book.allow) == (False, 11112, None)
    assert book.allowed() == ["CT_SCANNER", "ORTHANC"]  # no explicit list: the configured nodes
    nodes.set_listener(listen=True, port=11113, allow=["ORTHANC", "WS2"])
    data = tomllib.loads(nodes.nodes_path().read_text(encoding="utf-8"))
    assert data["local"] == {"ae_title": "MEDVIEW", "port": 11113, "listen": True, "allow": ["ORTHANC", "WS2"]}
    assert nodes.load_nodes().allowed() == ["ORTHANC", "WS2"]
    nodes.set_listener(allow=[])  # an empty list: nobody may store
    assert nodes.load_nodes().allowed() == []
    nodes.set_listener(allow=None)  # back to the configured nodes
    assert nodes.load_nodes().allowed() == ["CT_SCANNER", "ORTHANC"] and nodes.load_nodes().listen
    with pytest.raises(NodeConfigError, match="port 0 is out of range"):
        nodes.set_listener(port=0)
    with pytest.raises(NodeConfigError, match="TLS cert file not found"):
        nodes.set_listener(tls_cert=str(tmp_path / "missing.pem"))
    not_a_cert = tmp_path / "junk.pem"
    not_a_cert.write_text("not a certificate\n")
    with pytest.raises(NodeConfigError, match="cannot load the Storage SCP's TLS certificate"):
        nodes.set_listener(tls_cert=str(not_a_cert))
    assert nodes.load_nodes().tls_cert is None  # refused, not written
    nodes.nodes_path().write_text("[local]\nport = 'x'\n", encoding="utf-8")
    with pytest.raises(NodeConfigError, match=r"the \[local\] settings of the node list are invalid"):
        nodes.load_nodes()


def test_dicomweb_servers_by_name(medview_data_dir):
    web = nodes.add_web("archive", "https://archive.example.org/dicom-web/", user="reader")
    assert (web.url, web.user) == ("https://archive.example.org/dicom-web", "reader")
    assert nodes.resolve_web("archive") == web
    assert nodes.resolve_web("http://h:8042/dicom-web").url == "http://h:8042/dicom-web"
    with pytest.raises(NodeConfigError, match="unknown DICOMweb server 'arhcive' \\(configured: archive"):
        nodes.resolve_web("arhcive")
    with pytest.raises(NodeConfigError, match="is an http\\(s\\) URL"):
        nodes.add_web("bad", "ftp://h/x")
    nodes.add_node("pacs", "A@h:1")
    with pytest.raises(NodeConfigError, match="already the name of a DIMSE node"):
        nodes.add_web("pacs", "http://h/x")
    with pytest.raises(NodeConfigError, match="already the name of a DICOMweb server"):
        nodes.add_node("archive", "A@h:1")
    assert nodes.remove_node("archive").name == "archive" and nodes.load_nodes().web == {}


def test_cli_scp_settings_and_web_servers(medview_data_dir, capsys):
    from medview.cli.main import main

    assert main(["pacs", "nodes", "scp", "--listen", "--port", "11120", "--allow", "ORTHANC"]) == 0
    assert "on port 11120" in capsys.readouterr().out
    assert main(["pacs", "nodes", "web", "archive", "http://127.0.0.1:8042/dicom-web", "--user", "reader"]) == 0
    capsys.readouterr()
    assert main(["pacs", "nodes", "list"]) == 0
    out = capsys.readouterr().out
    assert "Storage SCP: MEDVIEW on port 11120, runs while the workstation is open; accepts ORTHANC" in out
    assert "archive" in out and "DICOMweb (user reader)" in out
    assert main(["pacs", "nodes", "scp", "--port", "70000"]) != 0
    assert "port 70000 is out of range" in capsys.readouterr().err

"""Sources reached over http:// or git:// (no server authentication, nothing protects the code in transit)
are refused unless the inventory opts in for that source; https, ssh, local paths and file:// pass."""

import pytest
from pydantic import ValidationError

from comfyinfra.spec import HostSpec
from comfyinfra.validate import InventoryError, check_inventory
from tests.unit.test_inventory_validation import load

BASE = {
    "host_kind": "linux", "comfyui_repo": "https://github.com/comfyanonymous/ComfyUI.git",
    "comfyui_ref": "a125cd84b054a57729b5eecab930ca9408719832",
    "torch": {"torch": "2.9.1", "torchvision": "0.24.1"}, "install_root": "/opt/comfyui", "service_user": "comfy",
}
REF = "b" * 40
SECURE = ["https://github.com/u/n.git", "ssh://git@github.com/u/n.git", "git@github.com:u/n.git",
          "file:///srv/mirror/n.git", "/srv/mirror/n.git"]


def spec(**overrides):
    return HostSpec.model_validate({**BASE, **overrides})


def refusal(**overrides) -> tuple[str, str]:
    """(field path, message) of the one problem with these overrides."""
    with pytest.raises(ValidationError) as error:
        spec(**overrides)
    (problem,) = error.value.errors()
    return ".".join(str(part) for part in problem["loc"]), problem["msg"]


def node(repo: str, **extra) -> dict:
    return {"name": "n", "repo": repo, "ref": REF, **extra}


@pytest.mark.parametrize("url", ["http://mirror.lan/ComfyUI.git", "git://mirror.lan/ComfyUI.git",
                                 "HTTP://mirror.lan/ComfyUI.git"])
def test_insecure_comfyui_repo_is_refused_naming_the_opt_in(url):
    field, message = refusal(comfyui_repo=url)
    assert field == "comfyui_repo"
    assert "neither authenticates the server" in message and "allowed: an https://, ssh://" in message
    assert "set comfyui_allow_insecure_transport=True" in message
    assert spec(comfyui_repo=url, comfyui_allow_insecure_transport=True).comfyui_repo == url


def test_insecure_node_repo_is_refused_per_node():
    field, message = refusal(custom_nodes=[node("https://github.com/u/a.git"), node("git://mirror.lan/n.git", name="b")])
    assert field == "custom_nodes.1.repo"
    assert "'git://mirror.lan/n.git' uses git://" in message and "set allow_insecure_transport=True" in message
    allowed = spec(custom_nodes=[node("git://mirror.lan/n.git", allow_insecure_transport=True)])
    assert allowed.custom_nodes[0].repo == "git://mirror.lan/n.git"
    for secure in SECURE:
        assert spec(comfyui_repo=secure, custom_nodes=[node(secure)]).custom_nodes[0].repo == secure


@pytest.mark.parametrize("sources,field", [
    ({"index_url": "http://pypi.lan/simple"}, "pip_sources.index_url"),
    ({"torch_index_url": "http://pypi.lan/whl/cu128"}, "pip_sources.torch_index_url"),
    ({"extra_index_urls": ["https://a.example/simple", "http://pypi.lan/simple"]}, "pip_sources.extra_index_urls"),
    ({"find_links": ["/srv/wheels", "http://pypi.lan/wheels/"]}, "pip_sources.find_links"),
])
def test_insecure_pip_sources_are_refused(sources, field):
    where, message = refusal(pip_sources=sources)
    assert where == field
    assert "uses http://" in message and "set pip_sources.allow_insecure_transport=True" in message
    assert spec(pip_sources={**sources, "allow_insecure_transport": True}).pip_sources


def test_find_links_must_be_an_absolute_directory_or_a_url_without_credentials():
    assert refusal(pip_sources={"find_links": ["wheels"]})[1].startswith(
        "Value error, 'wheels': allowed: an absolute directory on the host")
    field, message = refusal(pip_sources={"find_links": ["https://user:s3cret@w.example/wheels/"]})
    assert field == "pip_sources.find_links.0" and "credentials" in message and "s3cret" not in message
    assert spec(pip_sources={"find_links": ["/srv/wheels", "file:///srv/w", "https://w.example/"]}).pip_sources


def test_inventory_refusal_names_host_field_and_opt_in(tmp_path):
    inventory, path = load(tmp_path, 'linux = [("h1", {"custom_nodes": [{"name": "n", "repo": '
                                     f'"http://mirror.lan/n.git", "ref": "{REF}"}}]}})]')
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    message = str(error.value)
    assert "host h1, field custom_nodes[0].repo" in message and "set allow_insecure_transport=True" in message

"""A listen address beyond loopback exposes a server that runs code and has no authentication: refused unless
the host acknowledges it (expose_unauthenticated), with a message that says why and what to do instead."""

import pytest
from pydantic import ValidationError

from comfyinfra.spec import HostSpec
from comfyinfra.validate import InventoryError, check_inventory
from tests.unit.test_inventory_validation import load
from tests.unit.test_plan import BASE


@pytest.mark.parametrize("listen", ["0.0.0.0,::", "0.0.0.0", "::", "10.0.0.5", "127.0.0.1,192.168.1.20"])
def test_a_listen_address_beyond_loopback_needs_the_acknowledgement(listen):
    with pytest.raises(ValidationError, match="no authentication") as error:
        HostSpec.model_validate({**BASE, "listen": listen})
    message = str(error.value)
    assert "reverse proxy with authentication" in message and "expose_unauthenticated: True" in message
    assert HostSpec.model_validate({**BASE, "listen": listen, "expose_unauthenticated": True}).listen == listen


@pytest.mark.parametrize("listen", ["127.0.0.1", "::1", "127.0.0.1,::1", "127.0.0.2"])
def test_loopback_needs_nothing(listen):
    assert HostSpec.model_validate({**BASE, "listen": listen}).expose_unauthenticated is False


def test_the_inventory_error_names_file_host_and_field(tmp_path):
    inventory, path = load(tmp_path, '''
        linux = [("open", {"listen": "0.0.0.0,::"}),
                 ("acknowledged", {"listen": "0.0.0.0", "expose_unauthenticated": True})]
    ''')
    with pytest.raises(InventoryError) as error:
        check_inventory(inventory, path)
    message = str(error.value)
    assert "1 problem(s)" in message and path in message
    assert "host open, field listen" in message and "0.0.0.0, :: is not loopback" in message

"""comfyinfra.operations.pyinfra_overhead: the same answers as the pyinfra helpers it replaces."""

import gevent
import pyinfra
import pytest

from comfyinfra.operations.pyinfra_overhead import ORIGINAL_ARGUMENTS, ORIGINAL_ORDER, all_global_arguments, operation_order_from_stack


class State:
    current_deploy_filename = __file__
    current_op_file_number = 7


def both(state):  # stands where pyinfra's solve_operation_consistency calls it: one line, one f_lineno
    return ORIGINAL_ORDER(state), operation_order_from_stack(state)


def nested(state, depth):
    if depth:
        return nested(
            state,
            depth - 1,
        )
    return both(
        state)


@pytest.mark.parametrize("cli", [True, False])
@pytest.mark.parametrize("deploy_file", [__file__, "/elsewhere/deploy.py", None])
def test_same_line_numbers_as_pyinfra(monkeypatch, cli, deploy_file):
    monkeypatch.setattr(pyinfra, "is_cli", cli)
    state = State()
    state.current_deploy_filename = deploy_file
    original, fast = nested(state, 3)
    assert fast == original
    if deploy_file != "/elsewhere/deploy.py":  # not on the stack: pyinfra keeps no frame at all
        assert len(original) >= 5


def test_same_inside_a_greenlet():  # pyinfra loads deploy.py per host in greenlets: the stack ends there
    state = State()
    original, fast = gevent.spawn(nested, state, 2).get()
    assert fast == original


def test_same_global_arguments_and_a_fresh_list_each_time():
    first = all_global_arguments()
    assert first == ORIGINAL_ARGUMENTS() and len(first) > 10
    first.clear()
    assert all_global_arguments() == ORIGINAL_ARGUMENTS()


def test_install_reaches_the_functions_pyinfra_calls():
    import importlib

    from pyinfra.api import arguments

    from comfyinfra.operations import pyinfra_overhead

    module = importlib.import_module("pyinfra.api.operation")
    saved = module.get_operation_order_from_stack, arguments.all_global_arguments
    try:
        pyinfra_overhead.install()
        assert module.get_operation_order_from_stack is operation_order_from_stack
        assert "get_operation_order_from_stack" in module.solve_operation_consistency.__code__.co_names
        assert arguments.all_global_arguments is all_global_arguments
        assert "all_global_arguments" in arguments.pop_global_arguments.__code__.co_names
    finally:
        module.get_operation_order_from_stack, arguments.all_global_arguments = saved

"""app/offline.py's speed patch still names the flag Streamlit checks (a rename would bring
back 0.15 s of the first page's draw without an error)."""

import inspect


def test_the_repl_check_flag_is_the_one_streamlit_reads():
    from streamlit import delta_generator

    from app import offline
    source = inspect.getsource(delta_generator._maybe_print_use_warning)
    assert "if not _use_warning_has_been_displayed:" in source
    assert "env_util.is_repl()" in source
    before = delta_generator._use_warning_has_been_displayed
    try:
        offline.skip_repl_check()
        assert delta_generator._use_warning_has_been_displayed is True
    finally:
        delta_generator._use_warning_has_been_displayed = before

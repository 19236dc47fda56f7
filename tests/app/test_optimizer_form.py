"""The launch form shows the value each optimizer hyperparameter will take (issue 18): alpha,
beta2 and eps start empty, the field says the chosen optimizer's own constant, a run launched
so gets that constant, and a value typed in (even torch's default) is the value stored."""

from tests.app.conftest import page, stored_configs, wait_idle


def set_toy(at):
    at.selectbox(key="cfg_dataset").set_value("spirals")
    at = at.run()                 # the toy set's own options appear once it is chosen
    at.number_input(key="cfg_toy_samples").set_value(64)
    at.text_input(key="cfg_width").set_value("4")
    at.number_input(key="cfg_epochs").set_value(1)
    at.number_input(key="cfg_batch_size").set_value(16)
    return at.run()


def test_the_form_shows_the_chosen_optimizers_own_value_and_keeps_a_typed_one(services):
    store, manager = services
    at = page("launch").run()
    at.selectbox(key="cfg_optimizer").set_value("course-rmsprop")
    at = set_toy(at)
    assert not at.exception, at.exception
    assert at.text_input(key="cfg_alpha").value == ""          # unset until typed
    assert at.text_input(key="cfg_alpha").placeholder == "0.9 (course-rmsprop's own)"
    assert at.text_input(key="cfg_eps").placeholder == "1e-07 (course-rmsprop's own)"
    at.button(key="launch").click().run()
    wait_idle(manager)
    [first] = stored_configs(store)
    assert (first["alpha"], first["eps"]) == (0.9, 1e-7)
    at.text_input(key="cfg_alpha").set_value("0.99")
    at.text_input(key="cfg_eps").set_value("1e-8")
    at = at.run()
    at.button(key="launch").click().run()
    wait_idle(manager)
    typed = [c for c in stored_configs(store) if c["alpha"] == 0.99]
    assert [(c["optimizer"], c["alpha"], c["eps"]) for c in typed] == \
        [("course-rmsprop", 0.99, 1e-8)]

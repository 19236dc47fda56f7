"""Playground page (AppTest, fake trainer): one run per distinct config, nothing on a rerun or
a reload, the trail with diff labels (and back after a reload, from the URL's `tries`), pin and
clear, hidden knobs in their groups, pause/resume/stop, the untrained network and regions on
the first visit, the network following the newest snapshot, and the knobs as query
parameters (round trip; bad values refused with the field named, nothing run)."""

import base64
import json

import numpy as np

from app import playground
from tests.app.conftest import page, wait_for, wait_idle


def runs(store):
    """Stored runs, oldest first."""
    return list(reversed(store.list_runs()))


def charts(at):
    return {json.loads(c.proto.spec)["layout"]["title"]["text"]: json.loads(c.proto.spec)
            for c in at.get("plotly_chart")}


def loss_traces(at):
    """(name, opacity, width, legendrank) of the loss chart's traces, in legend order."""
    spec = charts(at)["Training loss (per step)"]
    traces = [(t["name"], t.get("opacity", 1), t["line"]["width"], t["legendrank"])
              for t in spec["data"]]
    return sorted(traces, key=lambda t: t[3])


def values(array):
    """A trace's data as a list: plotly sends numeric arrays as base64 typed arrays."""
    if isinstance(array, dict) and "bdata" in array:
        flat = np.frombuffer(base64.b64decode(array["bdata"]), dtype=array["dtype"])
        shape = [int(n) for n in str(array.get("shape", len(flat))).split(",")]
        return flat.reshape(shape).tolist()
    return list(array)


def labels(at):
    return [w.label for kind in ("selectbox", "select_slider", "radio", "number_input")
            for w in at.get(kind)]


def fresh(services, train=True, **query):
    """A new session on the page (a first visit, a reload or an opened link); with `train`,
    Train is pressed when the setup has no stored run yet."""
    at = page("playground")
    at.query_params.update(query)
    at.run()
    if train and any(b.key == "pg_train" for b in at.button):
        at.button(key="pg_train").click().run()
    return at


def test_opening_the_page_trains_nothing_train_launches_once_reruns_nothing(services):
    store, manager = services
    at = fresh(services, train=False)
    assert not at.exception and store.list_runs() == []
    assert any("Press Train" in c.value for c in at.caption)
    at.run()
    assert store.list_runs() == []
    at.button(key="pg_train").click().run()
    assert len(runs(store)) == 1
    first = runs(store)[0]
    assert first.config == playground.base_config() and first.tags == ["playground"]
    wait_idle(manager)
    at.run()
    at.run()
    assert len(runs(store)) == 1
    reloaded = fresh(services, train=False)           # a reload finds the stored run
    assert not reloaded.exception and len(runs(store)) == 1
    assert [t[0] for t in loss_traces(reloaded)] == ["current"]


def test_changing_a_knob_launches_exactly_one_run_with_that_config(services, fake_trainer):
    store, manager = services
    at = fresh(services)
    at.select_slider(key="pg_lr").set_value(0.1).run()
    assert not at.exception
    assert len(runs(store)) == 2
    assert runs(store)[1].config == {**playground.base_config(), "lr": 0.1}
    at.run()
    assert len(runs(store)) == 2
    wait_idle(manager)
    assert [c["lr"] for c in fake_trainer.configs] == [0.01, 0.1]


def test_previous_tries_stay_faded_with_diff_labels_most_recent_first(services):
    store, manager = services
    at = fresh(services)
    at.select_slider(key="pg_lr").set_value(0.1).run()
    at.selectbox(key="pg_optimizer").set_value("sgd").run()
    wait_idle(manager)
    at.run()
    assert loss_traces(at) == [("current", 1, 3.5, 1),
                               ("adam (now sgd)", 0.35, 1.5, 2),
                               ("adam (now sgd) · lr 0.01 (now 0.1)", 0.35, 1.5, 3)]
    assert any("**current**" in m.value for m in at.markdown)
    # Back to an earlier setting: its run becomes current again; nothing new is launched.
    at.selectbox(key="pg_optimizer").set_value("adam").run()
    assert len(runs(store)) == 3
    assert [t[0] for t in loss_traces(at)] == ["current", "sgd (now adam)",
                                               "lr 0.01 (now 0.1)"]


def test_pin_keeps_a_try_at_full_strength_and_names_it_clear_takes_it_off(services):
    store, manager = services
    at = fresh(services)
    base_id = runs(store)[0].id
    at.select_slider(key="pg_lr").set_value(0.1).run()
    at.select_slider(key="pg_batch_size").set_value(64).run()
    wait_idle(manager)
    lr_id = runs(store)[1].id
    at.button(key=f"pg_pin_{base_id}").click().run()
    assert not at.exception
    pinned = store.get_run(base_id)
    assert pinned.name.startswith("playground · spirals") and "pinned" in pinned.tags
    assert ("lr 0.01 (now 0.1) · batch 32 (now 64)", 1, 2, 3) in loss_traces(at)
    at.button(key=f"pg_clear_{lr_id}").click().run()
    assert [t[0] for t in loss_traces(at)] == ["current", "lr 0.01 (now 0.1) · batch 32 (now 64)"]
    assert store.get_run(lr_id) is not None            # cleared from the trail, kept in store
    at.button(key=f"pg_pin_{base_id}").click().run()   # unpin
    assert store.get_run(base_id).name == "" and "pinned" not in store.get_run(base_id).tags


def test_options_that_do_not_apply_are_hidden(services):
    at = fresh(services)
    assert {"Beta 1", "Beta 2"} <= set(labels(at)) and "Momentum" not in labels(at)
    at.selectbox(key="pg_optimizer").set_value("sgd").run()
    assert not {"Beta 1", "Beta 2", "Momentum"} & set(labels(at))
    assert "Norm position" not in labels(at) and "Weight scale" not in labels(at)
    at.selectbox(key="pg_norm").set_value("batch").run()
    assert "Norm position" in labels(at)
    assert "Model" not in labels(at) and "Width" in labels(at)      # toy data: MLP only
    at.selectbox(key="pg_dataset").set_value("fashion-mnist").run()
    at.selectbox(key="pg_model").set_value("three-layer-convnet").run()
    assert not at.exception
    assert "Width" not in labels(at) and "Residual" not in labels(at)
    assert "Depth" not in labels(at)
    at.selectbox(key="pg_dataset").set_value("circles").run()     # back to toy data: an MLP
    assert not at.exception and not at.error
    assert "Width" in labels(at) and "Model" not in labels(at)


def test_query_parameters_set_the_knobs_and_round_trip(services, fake_trainer):
    store, manager = services
    at = fresh(services, dataset="circles", optimizer="sgd", depth="3", lr="0.1")
    assert not at.exception
    assert at.selectbox(key="pg_dataset").value == "circles"
    assert at.select_slider(key="pg_lr").value == 0.1
    (record,) = runs(store)
    assert {k: record.config[k] for k in ("dataset", "optimizer", "depth", "lr")} == \
        {"dataset": "circles", "optimizer": "sgd", "depth": 3, "lr": 0.1}
    link = dict(at.query_params)
    assert {k: link[k] for k in ("dataset", "optimizer", "depth", "lr")} == \
        {"dataset": "circles", "optimizer": "sgd", "depth": "3", "lr": "0.1"}
    assert "beta2" not in link and "data_dir" not in link    # only the shown knobs' values
    at.number_input(key="pg_depth").set_value(4).run()
    assert at.query_params["depth"] in ("4", ["4"])
    wait_idle(manager)
    forward = dict(at.query_params)
    at.query_params.clear()
    at.query_params.update(link)                          # the browser's Back button
    at.run()
    assert at.number_input(key="pg_depth").value == 3 and len(runs(store)) == 2
    assert loss_traces(at)[1][0] == "depth 4 (now 3)"
    at.query_params.clear()
    at.query_params.update(forward)                       # ... and Forward
    at.run()
    assert at.number_input(key="pg_depth").value == 4 and len(runs(store)) == 2
    at.query_params.clear()                               # back via the sidebar: no parameters
    at.run()
    assert at.number_input(key="pg_depth").value == 4 and dict(at.query_params) == forward
    per_layer = fresh(services, train=False, dataset="spirals", depth="2", width="64,32")
    assert not per_layer.exception and per_layer.query_params["width"] in ("64,32", ["64,32"])
    assert any("Width per layer: 64-32" in c.value for c in per_layer.caption)
    assert len(runs(store)) == 2                          # kept as given, nothing launched
    opened = fresh(services, train=False, **dict(at.query_params))   # the shared link
    assert not opened.exception and opened.number_input(key="pg_depth").value == 4
    assert len(runs(store)) == 2                          # the same config: nothing new


def test_a_knob_flipped_while_the_browser_still_shows_an_older_link_is_kept(services):
    """A rerun carries the URL the browser had when the knob changed: when the page's last
    write (a try's end puts its replay step in the URL) had not reached it yet, that URL is
    stale, not a Back press, and the knob change must win (CI lost a depth change so)."""
    store, manager = services
    at = fresh(services, dataset="circles", depth="3")
    older = dict(at.query_params)
    at.select_slider(key="pg_lr").set_value(0.1).run()
    assert at.query_params["lr"] in ("0.1", ["0.1"])
    at.query_params.clear()
    at.query_params.update(older)                 # the browser has not seen the last write
    at.number_input(key="pg_depth").set_value(4).run()
    assert not at.exception
    assert at.number_input(key="pg_depth").value == 4
    assert at.select_slider(key="pg_lr").value == 0.1
    assert {(r.config["depth"], r.config["lr"]) for r in runs(store)} == \
        {(3, 0.01), (3, 0.1), (4, 0.1)}
    assert at.query_params["depth"] in ("4", ["4"]) and at.query_params["lr"] in ("0.1", ["0.1"])
    wait_idle(manager)


def test_bad_link_values_are_refused_naming_the_field_and_nothing_runs(services):
    store, _ = services
    for query, expected in (({"lr": "abc"}, ["lr", "'abc'", "finite number"]),
                            ({"optimizer": "adamx"}, ["optimizer", "'adamx'", "allowed: sgd"]),
                            ({"depth": "0"}, ["depth", ">= 1"]),
                            ({"bogus": "1"}, ["bogus", "unknown parameter", "lr"])):
        at = fresh(services, train=False, dataset="spirals", **query)
        assert not at.exception
        message = at.error[0].value
        assert all(part in message for part in expected), message
        assert "Nothing was launched" in message
        at.run()
        assert store.list_runs() == []
    at.select_slider(key="pg_lr").set_value(0.1).run()     # a knob change: the user's intent
    assert not at.error and len(runs(store)) == 1


def test_pause_resume_and_stop_buttons_act_on_the_current_try(services):
    store, manager = services
    at = fresh(services, seed="7")        # the fake trainer holds a seed-7 run after step 4
    run_id = runs(store)[0].id
    wait_for(lambda: manager.progress(run_id).step == 4, what="the first evaluation")
    at.button(key="pg_pause").click().run()
    assert manager.progress(run_id).paused
    assert "paused" in at.get("progress")[0].proto.text
    assert at.button(key="pg_pause").disabled and not at.button(key="pg_resume").disabled
    at.button(key="pg_resume").click().run()
    assert not manager.progress(run_id).paused
    at.button(key="pg_step").click().run()            # step once: lets one step by, then holds
    assert manager.progress(run_id).paused
    at.button(key="pg_resume").click().run()
    at.button(key="pg_stop").click().run()
    wait_idle(manager)
    assert store.get_run(run_id).status == "stopped"


def test_toy_data_beside_the_curves_then_the_newest_decision_regions(services):
    from engine.events import Snapshot
    store, manager = services
    at = fresh(services)
    # before the try's first snapshot: its untrained model's regions and network
    assert {"Decision regions before training", "Network before training"} <= set(charts(at))
    run_id = runs(store)[0].id
    wait_idle(manager)
    grid = {"bounds": [-1.0, 1.0, -1.0, 1.0], "x": [-1.0, 1.0], "y": [-1.0, 1.0],
            "classes": [[0, 1], [2, 0]]}
    for step in (4, 8):
        store.record(Snapshot(run_id, step, "regions", grid))
    store.flush(5)
    at.run()
    figure = charts(at)["Decision regions at step 8"]
    assert figure["data"][0]["type"] == "heatmap"
    assert values(figure["data"][0]["z"]) == grid["classes"]
    # a snapshot without the network (stored before the Playground drew one) says so
    assert "Network before training" not in charts(at)
    assert any("stored no network view" in c.value for c in at.caption)
    assert [t["name"] for t in figure["data"][1:]] == ["train"]     # validation points hidden
    at.toggle(key="pg_show_test").set_value(True).run()
    figure = charts(at)["Decision regions at step 8"]
    assert [t["name"] for t in figure["data"][1:]] == ["train", "test"]
    assert len(values(figure["data"][2]["x"])) == 120        # 20% of the 600 points


def test_image_data_shows_a_strip_of_predictions_green_right_red_wrong(services):
    from engine.events import Snapshot
    store, manager = services
    at = fresh(services, dataset="fashion-mnist")
    run_id = runs(store)[0].id
    wait_idle(manager)
    at.run()
    assert not at.exception and not any("Validation images" in c.value for c in at.caption)
    images = [[[0.0, 0.5], [1.0, 0.25]]] * 3
    store.record(Snapshot(run_id, 20, "predictions", {
        "images": images, "labels": [0, 1, 2], "predicted": [0, 2, 2],
        "classes": ["T-shirt", "Trouser", "Pullover"]}))
    store.flush(5)
    at.run()
    assert any("Validation images at step 20" in c.value for c in at.caption)
    assert len(at.get("image")) == 3
    marks = [m.value for m in at.markdown if m.value.startswith((":green[", ":red["))]
    assert marks == [":green[✓ T-shirt]", ":red[✗ Pullover]  \n:gray[true: Trouser]",
                     ":green[✓ Pullover]"]


def test_a_typed_out_of_range_number_is_named_and_launches_nothing(services):
    # A bounded number field keeps a typed value on screen and sends the old one; the
    # Playground's are unbounded, so the typed value is the one the config check refuses.
    store, _ = services
    at = fresh(services)
    assert len(runs(store)) == 1
    at.number_input(key="pg_seed").set_value(-3).run()
    assert not at.exception
    shown = " ".join(e.value for e in at.error)
    assert "seed" in shown and "-3" in shown and ">= 0" in shown
    assert len(runs(store)) == 1


def test_knob_labels_and_diff_words_come_from_the_option_catalogue(services):
    from engine import config
    at = fresh(services, train=False)
    shown = set(labels(at))
    base = playground.base_config()
    for name in playground.visible_knobs(base) + playground.visible_budget(base):
        assert config.label(name) in shown, name
    assert "Toy samples" in shown                   # one wording: the launch form's
    # "norm position" reads the same in a diff as on the form and in legends
    assert playground.diff_label({"norm": "layer"}, {"norm": "layer", "norm_position": "after"}) \
        == "norm position before (now after)"
    assert playground.diff_label({}, {"optimizer": "adam", "batch_size": 64}) == \
        "sgd (now adam) · batch 256 (now 64)"
    # how a try was scheduled is never a difference
    assert playground.diff_label({"seed": 0, "pack": True},
                                 {"seed": 1, "pack": False, "diagnostics": False,
                                  "device": "cpu"}) == "seed 0 (now 1)"


def network_chart(at):
    return next(spec for title, spec in charts(at).items() if title.startswith("Network"))


def test_the_first_visit_draws_the_data_and_the_untrained_network_and_trains_nothing(services):
    from engine import diagnostics
    from engine.config import RunConfig
    store, _ = services
    at = fresh(services, train=False)
    assert not at.exception and store.list_runs() == []
    shown = charts(at)
    untrained = diagnostics.initial_snapshot(RunConfig.from_dict(playground.base_config()))
    regions = shown["Decision regions before training"]
    assert values(regions["data"][0]["z"]) == untrained.data["classes"]
    assert len(values(regions["data"][1]["x"])) == 480           # the training points
    network = shown["Network before training"]
    edges = [t for t in network["data"] if t.get("mode") == "lines"]
    assert sum(x is None for t in edges for x in t["x"]) == 2 * 8 + 8 * 8 + 8 * 3
    assert [a["text"] for a in network["layout"]["annotations"]] == \
        ["input", "layer 1<br>8 of 20", "layer 2<br>8 of 20", "output"]
    # another seed is another initialization: another untrained network
    at.number_input(key="pg_seed").set_value(5).run()
    assert not at.exception and len(runs(store)) == 1              # a knob change trains


def test_the_network_view_follows_the_newest_snapshot(services):
    from engine import diagnostics, network_view
    from engine.config import RunConfig
    from engine.events import Snapshot
    store, manager = services
    at = fresh(services)
    run_id = runs(store)[0].id
    wait_idle(manager)
    cfg = RunConfig.from_dict(playground.base_config())
    seen = []
    for step, seed in ((15, 1), (30, 2)):           # two states of the network, as training
        data = diagnostics.initial_snapshot(cfg.replace(seed=seed)).data
        store.record(Snapshot(run_id, step, "regions", data))
        store.flush(5)
        at.run()
        network = network_chart(at)
        assert network["layout"]["title"]["text"] == f"Network at step {step}"
        drawn = [image["source"] for image in network["layout"]["images"]]
        wanted = [image.source for image in network_view.network_figure(
            data["network"]).layout.images]                            # this snapshot's
        assert drawn == wanted and len(drawn) == 2 + 8 + 8
        seen.append(drawn)
    assert seen[0][2:] != seen[1][2:]                             # the units changed


def test_the_tries_come_back_after_a_reload(services):
    store, manager = services
    at = fresh(services)
    at.select_slider(key="pg_lr").set_value(0.1).run()
    at.selectbox(key="pg_optimizer").set_value("sgd").run()
    wait_idle(manager)
    link = dict(at.query_params)
    ids = [r.id for r in runs(store)]
    assert link["tries"] == ",".join(rid[-6:] for rid in reversed(ids))   # newest first
    reloaded = fresh(services, train=False, **link)      # a new session on the same URL
    assert not reloaded.exception and len(runs(store)) == 3
    assert [t[0] for t in loss_traces(reloaded)] == ["current", "adam (now sgd)",
                                                     "adam (now sgd) · lr 0.01 (now 0.1)"]
    assert reloaded.selectbox(key="pg_optimizer").value == "sgd"
    # a link without tries (or naming runs this store lacks) shows the current try alone
    bare = fresh(services, train=False, **{k: v for k, v in link.items() if k != "tries"})
    assert [t[0] for t in loss_traces(bare)] == ["current"]
    odd = fresh(services, train=False, **{**link, "tries": "zzzzzz,123456," + ids[0][-6:]})
    assert not odd.exception and not odd.error
    assert [t[0] for t in loss_traces(odd)] == ["current", "adam (now sgd) · lr 0.01 (now 0.1)"]


def test_trail_param_round_trips_through_the_store(services):
    store, _ = services
    a = store.create_run({"lr": 0.1}, tags=["playground"])
    b = store.create_run({"lr": 0.2}, tags=["playground"])
    other = store.create_run({"lr": 0.3}, tags=["hw8"])        # not a Playground run
    text = playground.trail_param([b, a, other])
    assert text == f"{b[-6:]},{a[-6:]},{other[-6:]}"
    assert playground.trail_from_param(text, store.list_runs()) == [b, a]
    assert playground.trail_from_param(text.upper(), store.list_runs()) == [b, a]
    assert playground.trail_from_param("", store.list_runs()) == []


def test_knobs_are_grouped_as_data_network_training(services):
    at = fresh(services, train=False)
    groups = [m.value for m in at.markdown if "pg-group" in m.value]
    assert [g.split(">")[1].split("<")[0] for g in groups] == ["Data", "Network", "Training"]
    assert not any("What to learn" in c.value for c in at.caption)   # explanations on hover
    help_text = at.selectbox(key="pg_optimizer").help
    assert "update rule" in help_text and "adam: m ← β1·m" in help_text
    assert at.select_slider(key="pg_toy_noise").value == 0.1        # spirals' noise, a knob

"""Test doubles shared by the engine and page tests."""


class OneRunExecutor:
    """The job manager's executor seam around a fake trainer of one run,
    `fn(cfg, *, run_id, emit, should_stop)`: a group (a pack) is trained member after member.
    Tests of the queue itself submit runs with pack off, so every group is one run."""

    name = "fake"

    def __init__(self, fn):
        self.fn = fn

    def max_concurrent(self):
        return None

    def describe(self):
        return {"executor": self.name}

    def train(self, cfgs, *, run_ids, emit, should_stop_each):
        for cfg, run_id, should_stop in zip(cfgs, run_ids, should_stop_each):
            self.fn(cfg, run_id=run_id, emit=emit, should_stop=should_stop)

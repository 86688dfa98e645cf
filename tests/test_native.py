"""The native rollout against the torch reference: the same episodes, the same gradients, and the
fallback to twopass where the native library cannot be built."""

import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

from dist_vpg import native, noise
from dist_vpg.agent import Agent
from dist_vpg.losses import a2c_loss, training_signal
from dist_vpg.native import build
from dist_vpg.rollout import act, fusable, input_size, make_agent, rollout, usable_mode
from dist_vpg.tasks import make_task
from dist_vpg.tasks import settings as task_settings

ROOT = Path(__file__).resolve().parent.parent
TASKS = {
    "independent": task_settings(),
    "hard": task_settings(distribution="hard"),
    "three_arms": task_settings(arms=3),
    "no_trial_input": task_settings(trial_input=False),
    "two_step": task_settings("two_step"),
    "informative_arms": task_settings("informative_arms"),
    "informative_arms_stage1": task_settings("informative_arms", informative_scale=5.0),
    "restless": task_settings("restless"),
    "harlow": task_settings("harlow", fixation=False),
    "harlow_fixation": task_settings("harlow"),
}

pytestmark = pytest.mark.skipif(
    native.available() is not None, reason=f"native rollout unavailable: {native.available()}"
)


def _setup(cfg, batch: int, hidden: int = 48, seed: int = 0):
    task = make_task(cfg)
    torch.manual_seed(seed)
    agent = Agent(input_size(task, cfg.trial_input), task.num_actions, hidden)
    with torch.no_grad():  # a policy far from uniform, so actions depend on every weight
        agent.policy.weight.normal_(0, 1.0)
    draws = noise.draw(
        seed, noise.TRAIN, 3, np.arange(batch), task.trials, task.episode_draws, task.trial_draws
    )
    return task, agent, draws


def first_disagreements(agent, task, draws, trial_input) -> tuple[int, int, float]:
    """Play the batch both ways: (episodes whose actions ever differ, trials that differ, the largest
    distance between the uniform and the torch policy's CDF at each episode's first difference).
    On the episodes that agree, inputs, rewards and regrets must agree too."""
    played = native.act(agent, task, draws, trial_input)
    with torch.inference_mode():
        ref = act(agent, task, draws, trial_input, with_values=False)
    differ = played.actions != ref.actions  # [T, B]
    same = ~differ.any(0)
    assert torch.equal(played.inputs[:, same], ref.inputs[:, same])
    assert torch.equal(played.rewards[:, same], ref.rewards[:, same])
    assert torch.allclose(played.regrets[:, same], ref.regrets[:, same], atol=1e-6, rtol=0)
    worst = 0.0
    for b in differ.any(0).nonzero().flatten().tolist():
        t = int(differ[:, b].nonzero()[0])
        probs = torch.softmax(ref.logits[t, b], -1).cumsum(-1)[:-1]
        worst = max(worst, (probs - draws.action[t, b]).abs().min().item())
    return int((~same).sum()), int(differ.sum()), worst


# 13 hidden units leave a partial vector on every target the kernels are built for (VL of 4, 8, 16).
@pytest.mark.parametrize("hidden", [48, 13])
@pytest.mark.parametrize("name", list(TASKS))
def test_native_plays_the_torch_episodes(name, hidden):
    task, agent, draws = _setup(TASKS[name], batch=256, hidden=hidden)
    episodes, trials, worst = first_disagreements(agent, task, draws, TASKS[name].trial_input)
    # An episode may part only where a uniform falls within float rounding of a CDF boundary.
    assert worst < 1e-5
    assert episodes <= 2, f"{episodes} of 256 episodes differ ({trials} trials)"


def test_native_disagreements_are_rare_at_scale():
    """4096 episodes of the default task and agent: the count docs/performance.md reports."""
    task, agent, draws = _setup(TASKS["independent"], batch=4096)
    episodes, trials, worst = first_disagreements(agent, task, draws, True)
    print(f"native vs torch: {episodes} of 4096 episodes, {trials} of 409600 trials differ")
    assert worst < 1e-5 and episodes <= 4


def _gradients(agent, batch, value_scale=False):
    agent.zero_grad()
    loss = a2c_loss(
        batch.logits, batch.values, batch.actions, batch.rewards, 0.9, 0.8, 0.05, 0.05, value_scale
    )
    loss.total.backward()
    return {n: p.grad.clone() for n, p in agent.named_parameters()}


@pytest.mark.parametrize("hidden", [32, 13])
@pytest.mark.parametrize("name", list(TASKS))
def test_native_gradients_equal_the_replay(name, hidden):
    """On the same episodes, the native BPTT gives twopass's gradients (its nn.LSTM replay)."""
    task, agent, draws = _setup(TASKS[name], batch=48, hidden=hidden)
    for value_scale in (False, True):
        batch = rollout(agent, task, draws, "native", TASKS[name].trial_input)
        logits, values = agent(batch.inputs)  # twopass's replay of the same inputs
        got = _gradients(agent, batch, value_scale)
        want = _gradients(agent, batch._replace(logits=logits, values=values), value_scale)
        for n in want:
            assert torch.allclose(got[n], want[n], rtol=1e-4, atol=2e-6), n
            assert want[n].abs().max() > 1e-3, n  # every parameter gets a real gradient


LOSS_OPTIONS = {
    "rewards": dict(signal="reward"),
    "regret_per_trial_left": dict(signal="regret", value_scale=True),
    "gae": dict(signal="reward", gamma=0.99, lam=0.3),
    "tasks_of_four": dict(signal="regret", episodes_per_task=4, beta_e=0.3),
}


@pytest.mark.parametrize("options", list(LOSS_OPTIONS))
@pytest.mark.parametrize("name", ["independent", "two_step", "informative_arms", "harlow_fixation"])
def test_native_loss_equals_the_torch_loss(name, options):
    """The heads, the A2C loss and the whole gradient in C (native.a2c_loss) against a2c_loss on
    twopass's nn.LSTM replay of the same episodes: the same terms, the same gradients, scaled by
    what reaches the loss (sync.accumulate's 1/k)."""
    task, agent, draws = _setup(TASKS[name], batch=48, hidden=32)
    with torch.no_grad():
        agent.value.weight.normal_(0, 0.3)
    opts = dict(gamma=0.9, lam=1.0, beta_v=0.05, beta_e=0.05) | LOSS_OPTIONS[options]
    signal_name = opts.pop("signal")
    played = native.act(agent, task, draws, TASKS[name].trial_input)
    signal = training_signal(played.rewards, played.regrets, signal_name)
    agent.zero_grad()
    logits, values = agent(played.inputs)
    want = a2c_loss(logits, values, played.actions, signal, **opts)
    want.total.backward()
    want_grads = {n: p.grad.clone() for n, p in agent.named_parameters()}
    agent.zero_grad()
    got = native.a2c_loss(played, agent, signal, **opts)
    (got.total / 4).backward()
    for term, a, b in zip(want._fields, want, got):
        assert b.item() == pytest.approx(a.item(), rel=1e-4, abs=1e-5), term
    for n, p in agent.named_parameters():
        assert torch.allclose(4 * p.grad, want_grads[n], rtol=1e-4, atol=2e-6), n
        assert want_grads[n].abs().max() > 1e-3, n  # every parameter gets a real gradient


@pytest.mark.parametrize("options", list(LOSS_OPTIONS))
@pytest.mark.parametrize("name", list(TASKS))
def test_the_one_call_update_adds_the_three_calls_gradient_bit_for_bit(name, options):
    """native.Update (one C call: acting, loss, backward, the gradient added to .grad) against
    native.act and native.a2c_loss with autograd accumulating, over three rollouts of an update
    scaled by 1/3 as sync.accumulate's rounds are: the same episodes, terms and .grad, bit for bit
    (training's figures do not move with the path it takes)."""
    task, agent, _ = _setup(TASKS[name], batch=8, hidden=32)
    fused = Agent(agent.lstm.input_size, task.num_actions, 32)
    fused.load_state_dict(agent.state_dict())
    opts = dict(gamma=0.9, lam=1.0, beta_v=0.05, beta_e=0.05) | LOSS_OPTIONS[options]
    signal_name = opts.pop("signal")
    update, trial_input = native.Update(fused), TASKS[name].trial_input
    agent.zero_grad(set_to_none=False)
    scale = float(np.float32(1) / np.float32(3))
    for k in range(3):
        ids = np.arange(k * 24, (k + 1) * 24)
        draws = noise.draw(0, noise.TRAIN, 7, ids, task.trials, task.episode_draws, task.trial_draws)
        played = native.act(agent, task, draws, trial_input)
        signal = training_signal(played.rewards, played.regrets, signal_name)
        want = native.a2c_loss(played, agent, signal, **opts)
        (want.total / 3).backward()
        got = update(task, draws, trial_input, signal_name, scale, **opts)
        for field in ("inputs", "actions", "rewards", "regrets"):
            assert torch.equal(getattr(got, field), getattr(played, field)), field
        for term, a, b in zip(want._fields, want, got.loss):
            assert b.item() == a.item(), term
    for (n, p), q in zip(agent.named_parameters(), fused.parameters()):
        assert torch.equal(q.grad, p.grad), n
        assert p.grad.abs().max() > 1e-4, n  # every parameter gets a real gradient


def test_the_one_call_update_refuses_what_it_does_not_compute():
    task, agent, draws = _setup(TASKS["independent"], batch=10, hidden=8)
    update = native.Update(agent)
    loss = dict(gamma=0.9, lam=1.0, beta_v=0.05, beta_e=0.05)
    with pytest.raises(ValueError, match="learns from reward or regret, not 'imitation'"):
        update(task, draws, True, "imitation", 1.0, **loss)
    with pytest.raises(ValueError, match="10 episodes do not split into tasks of 4"):
        update(task, draws, True, "reward", 1.0, **loss, episodes_per_task=4)
    agent.policy.weight.data = agent.policy.weight.data.t().contiguous().t()  # a view, not contiguous
    with pytest.raises(native.NativeError, match="contiguous float32"):
        update(task, draws, True, "reward", 1.0, **loss)


def test_training_takes_the_one_call_for_what_it_computes():
    """rollout.fusable: the native path, a plain critic and the reward or regret signal; an
    imitating agent, a privileged critic and the torch modes keep rollout_loss and autograd."""
    task = make_task(TASKS["independent"])
    plain = make_agent(task, True, 8)
    assert fusable(plain, "native", "regret") and fusable(plain, "native", "reward")
    assert not fusable(plain, "native", "imitation")
    assert not fusable(plain, "twopass", "regret")
    assert not fusable(make_agent(task, True, 8, privileged_critic=True), "native", "regret")


def test_native_loss_refuses_tasks_that_do_not_divide_the_batch():
    task, agent, draws = _setup(TASKS["independent"], batch=10, hidden=8)
    played = native.act(agent, task, draws, True)
    with pytest.raises(ValueError, match="10 episodes do not split into tasks of 4"):
        native.a2c_loss(played, agent, played.rewards, 0.9, 1.0, 0.05, 0.05, episodes_per_task=4)


def test_native_graph_survives_a_second_backward():
    """dist_vpg.inspect_update back-propagates one batch's loss terms one after another."""
    task, agent, draws = _setup(TASKS["independent"], batch=8, hidden=16)
    batch = rollout(agent, task, draws, "native", True)
    loss = a2c_loss(batch.logits, batch.values, batch.actions, batch.rewards, 0.9, 1.0, 0.05, 0.05)
    first = torch.autograd.grad(loss.policy, list(agent.parameters()), retain_graph=True, allow_unused=True)
    second = torch.autograd.grad(loss.policy, list(agent.parameters()), allow_unused=True)
    for a, b in zip(first, second):
        assert (a is None and b is None) or torch.equal(a, b)


def test_fallback_names_the_reason(monkeypatch):
    task = make_task(task_settings())
    with build.afresh():
        monkeypatch.setenv("DIST_VPG_NATIVE", "0")
        mode, warning = usable_mode("native", task)
        assert mode == "twopass" and "DIST_VPG_NATIVE=0" in warning and "twopass" in warning
        assert usable_mode("onepass", task) == ("onepass", None)
        monkeypatch.delenv("DIST_VPG_NATIVE")
    assert usable_mode("native", task) == ("native", None)


def reason_with(monkeypatch, **env) -> str | None:
    """native.available() in an environment changed by `env`, built afresh and forgotten after."""
    with monkeypatch.context() as changed, build.afresh():
        for name, value in env.items():
            changed.setenv(name, value)
        return native.available()


def test_no_compiler_is_a_reason_not_a_crash(monkeypatch, tmp_path):
    # no cc, gcc or clang on PATH, and CC names none
    reason = reason_with(
        monkeypatch, DIST_VPG_NATIVE_CACHE=str(tmp_path / "cache"), PATH=str(tmp_path), CC="no-such-compiler"
    )
    assert reason is not None and "no C compiler" in reason


@pytest.mark.slow
def test_broken_compiler_is_a_reason_not_a_crash(monkeypatch, tmp_path):
    fake = tmp_path / "cc"
    fake.write_text(
        '#!/bin/sh\n[ "$1" = --version ] && echo fake 1.0 && exit 0\n'
        "echo 'fatal: out of luck' >&2\nexit 1\n"
    )
    fake.chmod(0o755)
    reason = reason_with(monkeypatch, DIST_VPG_NATIVE_CACHE=str(tmp_path / "cache"), CC=str(fake))
    assert "could not build" in reason and "out of luck" in reason
    assert not list((tmp_path / "cache").glob("*.tmp"))  # nothing half-written left behind


def _compiler_that(tmp_path, on_march_native: str):
    """A C compiler that runs `on_march_native` (shell) when given -march=native, else the real one."""
    fake = tmp_path / "cc"
    real = build.compiler()
    fake.write_text(
        f'#!/bin/sh\nfor a in "$@"; do [ "$a" = -march=native ] && {{ {on_march_native}; }}; done\n'
        f'exec {real} "$@"\n'
    )
    fake.chmod(0o755)
    return str(fake)


@pytest.mark.slow
def test_a_compiler_stopped_mid_build_leaves_no_library_behind(monkeypatch, tmp_path):
    """An interrupted build is not a reason to fall back to the portable flags (a library several
    times slower, kept for good): it builds nothing, and the next run builds the native library."""
    cache = tmp_path / "cache"
    killed = _compiler_that(tmp_path, "kill -TERM $$")
    reason = reason_with(monkeypatch, DIST_VPG_NATIVE_CACHE=str(cache), CC=killed)
    assert "stopped by signal 15" in reason and "builds it again" in reason
    assert not list(cache.glob("*.so"))
    (tmp_path / "cc").unlink()
    assert reason_with(monkeypatch, DIST_VPG_NATIVE_CACHE=str(cache), CC=build.compiler()) is None
    assert [p.name for p in cache.glob("kernels-*.so") if p.name.endswith("-portable.so")] == []


@pytest.mark.slow
def test_a_compiler_without_march_native_builds_the_portable_library_under_its_own_name(
    monkeypatch, tmp_path
):
    cache = tmp_path / "cache"
    refuses = _compiler_that(tmp_path, "echo 'error: unrecognized -march=native' >&2; exit 1")
    assert reason_with(monkeypatch, DIST_VPG_NATIVE_CACHE=str(cache), CC=refuses) is None
    built = sorted(p.name for p in cache.glob("kernels-*.so"))
    assert len(built) == 1 and built[0].endswith("-portable.so")


@pytest.mark.slow
def test_the_portable_library_plays_and_learns_as_torch_does(monkeypatch, tmp_path):
    """The libraries built without -march=native (the kernels' vectors of 4 floats) give torch's
    episodes and the replay's gradients, with 13 hidden units: a partial vector there too."""
    refuses = _compiler_that(tmp_path, "echo 'error: unrecognized -march=native' >&2; exit 1")
    with monkeypatch.context() as changed, build.afresh():
        changed.setenv("DIST_VPG_NATIVE_CACHE", str(tmp_path / "cache"))
        changed.setenv("CC", refuses)
        assert native.available() is None
        for name in ("independent", "two_step"):
            task, agent, draws = _setup(TASKS[name], batch=96, hidden=13)
            episodes, _, worst = first_disagreements(agent, task, draws, TASKS[name].trial_input)
            assert worst < 1e-5 and episodes <= 2, name
            batch = rollout(agent, task, draws, "native", TASKS[name].trial_input)
            logits, values = agent(batch.inputs)
            got = _gradients(agent, batch)
            want = _gradients(agent, batch._replace(logits=logits, values=values))
            for n in want:
                assert torch.allclose(got[n], want[n], rtol=1e-4, atol=2e-6), (name, n)
        built = sorted(p.name for p in (tmp_path / "cache").glob("kernels-*.so"))
        assert len(built) == 1 and built[0].endswith("-portable.so")


@pytest.mark.slow
def test_a_variant_of_other_flags_is_a_library_of_its_own(monkeypatch, tmp_path):
    """benchmarks/bench_kernels.py loads the runtime and the same source built with other flags side
    by side: each is its own build, and asking again gives each its own back."""
    monkeypatch.setenv("DIST_VPG_NATIVE_CACHE", str(tmp_path))
    variant = build.Source(build.SOURCE, build.DECLARED, ("-DDV_VARIANT_TEST",))
    with build.afresh():
        base, other = build.load(), build.load(variant)
        assert other is not base and other._name != base._name
        assert build.load(variant) is other and build.load() is base
    assert len(list(tmp_path.glob("kernels-*.so"))) == 2


@pytest.mark.slow
def test_unusable_cache_is_a_reason_not_a_crash(monkeypatch, tmp_path):
    (tmp_path / "file").write_text("a regular file, not a folder")
    reason = reason_with(monkeypatch, DIST_VPG_NATIVE_CACHE=str(tmp_path / "file" / "cache"))
    assert "cannot create the build cache" in reason and "DIST_VPG_NATIVE_CACHE" in reason


@pytest.mark.slow
def test_ranks_building_at_once_share_one_build(tmp_path):
    """Local ranks start together; one compiles, the others wait for it and load the same file."""
    code = "from dist_vpg import native; print(native.available())"
    env = {**os.environ, "DIST_VPG_NATIVE_CACHE": str(tmp_path)}
    procs = [
        subprocess.Popen([sys.executable, "-c", code], cwd=ROOT, env=env, stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    outputs = [p.communicate(timeout=300)[0].strip() for p in procs]
    assert outputs == ["None"] * 3
    assert len(list(tmp_path.glob("kernels-*.so"))) == 1 and not list(tmp_path.glob("*.tmp"))


@pytest.mark.slow
def test_training_falls_back_with_one_warning(tmp_path):
    env = {**os.environ, "DIST_VPG_NATIVE": "0"}
    args = ["task.trials=10", "train.updates=2", "train.batch_episodes=4", "agent.hidden=8", "log.every=1"]
    args += [f"run_dir={tmp_path / 'run'}", "eval.every=0"]
    done = subprocess.run(
        [sys.executable, "-m", "dist_vpg.train", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout + done.stderr
    assert out.count("train.rollout=native is unavailable: turned off by DIST_VPG_NATIVE=0") == 1
    assert "twopass rollout" in out


def test_evaluation_plays_the_same_episodes_natively(monkeypatch):
    """Frozen-weight evaluation acts natively where it can; its figures are the torch player's."""
    from dist_vpg.evaluation import evaluate_agent

    task, agent, _ = _setup(TASKS["two_step"], batch=1, hidden=32)
    fast = evaluate_agent(agent, task, True, 300, 5).metrics()
    with build.afresh():
        monkeypatch.setenv("DIST_VPG_NATIVE", "0")
        assert native.available(task) is not None
        slow = evaluate_agent(agent, task, True, 300, 5).metrics()
        monkeypatch.delenv("DIST_VPG_NATIVE")
    assert fast == slow


@pytest.mark.parametrize("max_norm", [50.0, 0.01, float("inf")])
def test_native_step_equals_torch_clip_and_rmsprop(max_norm):
    """native.RMSprop.clip_and_step against clip_grad_norm_ and torch's RMSprop.step: the same
    norm, clipped gradients, parameters and state over several steps (clipping on and off)."""
    task, agent, draws = _setup(TASKS["independent"], batch=16, hidden=16)
    twin = Agent(agent.lstm.input_size, task.num_actions, 16)
    twin.load_state_dict(agent.state_dict())
    ours = native.RMSprop(agent.parameters(), lr=1e-2, alpha=0.99, eps=1e-5)
    theirs = torch.optim.RMSprop(twin.parameters(), lr=1e-2, alpha=0.99, eps=1e-5)
    for step in range(4):
        for a, b in zip(agent.parameters(), twin.parameters()):
            a.grad = torch.randn_like(a) * (step + 1)
            b.grad = a.grad.clone()
        norm = ours.clip_and_step(list(agent.parameters()), max_norm)
        want = float(torch.nn.utils.clip_grad_norm_(list(twin.parameters()), max_norm))
        theirs.step()
        assert norm == pytest.approx(want, rel=1e-5)
        for a, b in zip(agent.parameters(), twin.parameters()):
            assert torch.allclose(a.grad, b.grad, rtol=1e-5, atol=1e-7)
            assert torch.allclose(a, b, rtol=1e-5, atol=1e-6)
            assert torch.allclose(ours.state[a]["square_avg"], theirs.state[b]["square_avg"], rtol=1e-5)
            assert ours.state[a]["step"] == theirs.state[b]["step"]
    theirs.load_state_dict(ours.state_dict())  # the same state_dict: checkpoints load either way


def test_native_step_skips_a_non_finite_gradient_and_declines_what_it_does_not_compute():
    task, agent, draws = _setup(TASKS["independent"], batch=8, hidden=8)
    params = list(agent.parameters())
    before = [p.detach().clone() for p in params]
    for p in params:
        p.grad = torch.zeros_like(p)
    params[0].grad[0, 0] = float("nan")
    ours = native.RMSprop(params, lr=1e-2)
    assert math.isnan(ours.clip_and_step(params, 1.0))
    assert all(torch.equal(a, b) for a, b in zip(params, before))  # nothing stepped
    assert native.RMSprop(params, lr=1e-2, momentum=0.9).clip_and_step(params, 1.0) is None
    assert native.RMSprop(params, lr=1e-2, centered=True).clip_and_step(params, 1.0) is None

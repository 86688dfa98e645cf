"""Play mode driven by scripted keystrokes."""

import io

import numpy as np
import pytest
import torch

from dist_vpg import noise, play
from dist_vpg.checkpoint import load_agent
from dist_vpg.rollout import act
from dist_vpg.tasks import make_task


def episode(path, seed):
    agent, cfg = load_agent(path)
    task = make_task(cfg.task)
    draws = noise.draw(seed, noise.EVAL, 1, np.array([0]), task.trials, task.episode_draws, task.trial_draws)
    return agent, cfg, task, draws


def test_the_better_arm_every_trial_has_no_regret_and_the_agent_plays_the_same_episode():
    path = play.DEFAULT_CHECKPOINT["bandit"]
    agent, cfg, task, draws = episode(path, 11)
    better = int(task.reset(draws.episode).probs[0].argmax()) + 1
    keys = io.StringIO("x\n3\n" + f"{better}\n" * task.trials)  # two bad keys first: asked again
    out = io.StringIO()
    result = play.play(path, 11, keys, out)
    assert result["trials"] == task.trials and result["your_regret"] == 0
    with torch.inference_mode():
        ref = act(agent, task, draws, cfg.task.trial_input, with_values=False)
    assert result["agent_regret"] == ref.regrets.sum().item()
    assert out.getvalue().count("type 1 or 2") == 2
    assert "Revealed: arm 1 paid with p = " in out.getvalue()


def test_two_step_stops_on_q_and_compares_over_the_trials_played():
    out = io.StringIO()
    result = play.play(play.DEFAULT_CHECKPOINT["two_step"], 5, io.StringIO("1\n2\n1\nq\n"), out)
    assert result["trials"] == 3
    assert out.getvalue().count("you reached state") == 3
    assert "Over 3 trials" in out.getvalue()


def test_a_bad_checkpoint_is_one_line(tmp_path, capsys):
    assert play.main(["--checkpoint", str(tmp_path / "missing.pt")], io.StringIO(""), io.StringIO()) == 2
    assert "no such checkpoint" in capsys.readouterr().err


def test_informative_arms_take_any_of_eleven_keys_and_reveal_the_target():
    path = play.DEFAULT_CHECKPOINT["informative_arms"]
    _, _, task, draws = episode(path, 3)
    target = int(task.reset(draws.episode).target[0]) + 1
    keys = io.StringIO("12\n11\n" + f"{target}\n" * 4)  # 12 is no arm: asked again
    out = io.StringIO()
    result = play.play(path, 3, keys, out)
    assert out.getvalue().count("type one of 1-11") == 1
    assert result["your_reward"] == pytest.approx(target / 10 + 4 * 5)
    assert result["your_regret"] == pytest.approx(5 - target / 10)
    assert f"Revealed: arm {target} paid 5" in out.getvalue()
    # the rules say what arm 11 is before the first choice
    first = out.getvalue().splitlines()[0]
    assert "arm 11 pays little, but what it pays says which arm pays 5" in first


def test_one_trial_played_is_one_trial():
    out = io.StringIO()
    play.play(play.DEFAULT_CHECKPOINT["two_step"], 5, io.StringIO("1\nq\n"), out)
    text = out.getvalue()
    assert "Over 1 trial:" in text and text.startswith("two_step: 100 trials, 2 choices. Each choice")


def test_restless_reveals_the_drift_and_the_path_of_p():
    out = io.StringIO()
    result = play.play(play.DEFAULT_CHECKPOINT["restless"], 8, io.StringIO("1\n2\n1\nq\n"), out)
    assert result["trials"] == 3
    revealed = out.getvalue().split("Revealed: ")[1]
    assert revealed.startswith(
        ("a volatile episode (p stepped by s.d. 0.2", "a stable episode (p stepped by s.d. 0.02")
    )
    assert len(revealed.split("p on your trials: ")[1].split(".\n")[0].split()) == 3

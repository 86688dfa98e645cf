import numpy as np
import pytest
import torch

from dist_vpg import native, noise


def test_uniforms_depend_only_on_their_coordinates():
    whole = noise.uniforms((1, 0, 5), np.arange(10), 4, 3)
    part = noise.uniforms((1, 0, 5), np.array([7, 3]), 4, 3)
    assert whole.shape == (4, 10, 3)
    assert torch.equal(part[:, 0], whole[:, 7])
    assert torch.equal(part[:, 1], whole[:, 3])


def test_uniforms_change_with_every_coordinate():
    base = noise.uniforms((1, 0, 5), np.arange(4), 3, 2)
    for key in [(2, 0, 5), (1, 1, 5), (1, 0, 6)]:
        assert not torch.equal(base, noise.uniforms(key, np.arange(4), 3, 2))
    assert not torch.equal(base[:, :2], noise.uniforms((1, 0, 5), np.arange(2, 4), 3, 2)[:, :2])


def test_uniforms_look_uniform_and_independent():
    u = noise.uniforms((0, 0, 0), np.arange(2000), 50, 2).double()
    assert 0.0 <= u.min() and u.max() < 1.0
    assert abs(u.mean().item() - 0.5) < 0.003  # 200k draws: standard error 0.00065
    assert abs(u.var().item() - 1 / 12) < 0.002
    flat = u.reshape(-1, 2)
    assert abs(torch.corrcoef(flat.T)[0, 1].item()) < 0.01
    lag = u[1:, :, 0].reshape(-1), u[:-1, :, 0].reshape(-1)
    assert abs(torch.corrcoef(torch.stack(lag))[0, 1].item()) < 0.01
    counts = torch.histc(u.float(), bins=10, min=0, max=1)
    expected = u.numel() / 10
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 30  # 9 degrees of freedom: p < 0.001 above 27.9


def test_draw_splits_train_from_eval():
    kw = dict(episodes=np.arange(8), trials=5, episode_draws=2, trial_draws=1)
    train = noise.draw(0, noise.TRAIN, 0, **kw)
    evaluation = noise.draw(0, noise.EVAL, 0, **kw)
    assert train.episode.shape == (8, 2) and train.trial.shape == (5, 8, 1) and train.action.shape == (5, 8)
    assert not torch.equal(train.trial, evaluation.trial)


def test_episodes_per_task_share_the_task_and_nothing_else():
    ids = np.arange(8, 16)
    alone = noise.draw(3, noise.TRAIN, 5, ids, 10, 2, 1)
    grouped = noise.draw(3, noise.TRAIN, 5, ids, 10, 2, 1, episodes_per_task=4)
    for g in range(2):  # episodes 8-11 play task 2, episodes 12-15 task 3
        block = grouped.episode[4 * g : 4 * g + 4]
        assert torch.equal(block, block[:1].expand(4, -1))
        assert torch.equal(block[0], noise.draw(3, noise.TRAIN, 5, np.array([2 + g]), 10, 2, 1).episode[0])
    assert not torch.equal(grouped.episode[0], grouped.episode[4])
    assert torch.equal(grouped.trial, alone.trial) and torch.equal(grouped.action, alone.action)


@pytest.mark.skipif(native.available() is not None, reason="the native build is unavailable here")
def test_the_native_hash_gives_the_numpy_hash_bit_for_bit():
    rng = np.random.default_rng(0)
    for cols in (1, 2, 3, 5):
        for _ in range(5):
            key = tuple(int(k) for k in rng.integers(-(2**40), 2**40, size=4))
            episodes = rng.integers(-(2**50), 2**50, size=int(rng.integers(1, 70)))
            rows = int(rng.integers(1, 30))
            got = noise.uniforms(key, episodes, rows, cols)
            assert torch.equal(got, noise.uniforms_reference(key, episodes, rows, cols)), (cols, key)

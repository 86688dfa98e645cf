"""The native interface declared once (dist_vpg/native/interface.h): what Python parses from it, the
compiler's layout checked against it, and the kernels' refusals as sentences."""

import ctypes

import pytest
import torch

from dist_vpg import native
from dist_vpg.native import build, interface
from dist_vpg.tasks import make_task
from tests.test_native import TASKS, _setup

pytestmark = pytest.mark.skipif(
    native.available() is not None, reason=f"native rollout unavailable: {native.available()}"
)

SMALL_HEADER = """
/* a comment, with ; and { } inside */
#include <stdint.h>
enum { ONE = 1, BIG = 0x10 };
typedef struct {
    int32_t a, b; /* two ints */
    const float *p;
    double d;
} Pair;
const char *dv_name(int32_t status);
int32_t dv_go(int64_t n, const Pair *pair, float *const *rows, uint64_t key, double x);
void dv_none(float scale);
"""


def test_the_parser_reads_constants_structs_and_signatures():
    declared = interface.parse(SMALL_HEADER)
    assert declared.constants == {"ONE": 1, "BIG": 16}
    pair = declared.structs["Pair"]
    assert [name for name, _ in pair._fields_] == ["a", "b", "p", "d"]
    assert (pair.a.offset, pair.b.offset, pair.p.offset, pair.d.offset) == (0, 4, 8, 16)
    assert declared.functions["dv_name"] == (ctypes.c_char_p, [ctypes.c_int32])
    restype, argtypes = declared.functions["dv_go"]
    assert restype is ctypes.c_int32
    assert argtypes[0] is ctypes.c_int64 and argtypes[2:] == [
        ctypes.c_void_p,
        ctypes.c_uint64,
        ctypes.c_double,
    ]
    assert argtypes[1]._type_ is pair  # a pointer to a declared struct is typed as one
    assert declared.functions["dv_none"] == (None, [ctypes.c_float])


@pytest.mark.parametrize(
    "text, complaint",
    [
        ("typedef struct { size_t n; } S;", "the type 'size_t'"),
        ("typedef struct { unsigned long n; } S;", "a field the parser does not read"),
        ("typedef struct { int32_t n[4]; } S;", "a field the parser does not read"),
        ("static int helper;", "a declaration the parser does not read"),
    ],
)
def test_the_parser_refuses_what_it_does_not_read(text, complaint):
    with pytest.raises(interface.InterfaceError, match=complaint):
        interface.parse(text)


def test_the_library_and_python_agree_on_every_size_offset_and_constant():
    lib = build.load()
    entries = interface.layout_entries()
    fields = sum(len(s._fields_) for s in interface.DECLARED.structs.values())
    assert len(entries) == len(interface.DECLARED.structs) + fields + len(interface.DECLARED.constants)
    assert [lib.dv_layout(i) for i in range(len(entries))] == [expected for _, _, expected in entries]
    assert lib.dv_layout(len(entries)) == -1
    assert (
        lib.dv_error(interface.DECLARED.constants["DV_BAD_ACTION"]).decode().startswith("a recorded action")
    )


def test_a_library_that_lays_a_struct_out_otherwise_is_refused_in_one_sentence():
    """As if interface.h had changed since the library was built: the loss's settings widened to
    doubles move every field after the first, and binding names the first that differs."""
    text = interface.HEADER.read_text().replace("float gamma, lam,", "double gamma, lam,")
    assert text != interface.HEADER.read_text()
    other = ctypes.CDLL(build.load()._name)  # its own function objects: the loaded one is untouched
    with pytest.raises(interface.InterfaceError) as refused:
        interface.bind(other, interface.parse(text))
    message = str(refused.value)
    assert "disagree on the offset of LossSpec.lam (4 in C, 8 in Python)" in message
    assert "\n" not in message
    assert "DIST_VPG_NATIVE=0" in message


class _AlteredTask:
    """Wraps a task whose native_state leaves out what its step reads, or returns another struct."""

    def __init__(self, task, returns=None, **fields):
        self.task, self.returns, self.fields = task, returns, fields

    def __getattr__(self, name):
        return getattr(self.task, name)

    def native_state(self, state, keep):
        found = self.task.native_state(state, keep)
        for name, value in self.fields.items():
            setattr(found, name, value)
        return found if self.returns is None else self.returns


@pytest.mark.parametrize("fields", [{"arm_probs": None}, {"arms": 0}, {"arms": 3}])  # 3 arms, 2 actions
def test_a_task_state_its_step_cannot_read_is_refused_in_a_sentence(fields):
    task, agent, draws = _setup(TASKS["independent"], batch=8, hidden=8)
    refusal = (
        r"^the native \w+ task's step \(step.c\) refused its arguments: "
        r"the task's native state lacks what its step reads"
    )
    with pytest.raises(native.NativeError, match=refusal):
        native.act(agent, _AlteredTask(task, **fields), draws, True)


def test_a_task_state_of_another_struct_is_refused_in_a_sentence():
    task, agent, draws = _setup(TASKS["independent"], batch=8, hidden=8)
    other = make_task(TASKS["two_step"]).native_step.State()
    with pytest.raises(
        native.NativeError, match="returned TwoStepStep, not the BanditStep that step.c declares"
    ):
        native.act(agent, _AlteredTask(task, returns=other), draws, True)


def test_the_loss_kernel_refuses_an_action_outside_the_policy():
    task, agent, draws = _setup(TASKS["independent"], batch=8, hidden=8)
    played = native.act(agent, task, draws, True)
    played.actions[3, 2] = task.num_actions
    with pytest.raises(native.NativeError, match="dv_a2c_loss.*not one of the policy's actions"):
        native.a2c_loss(played, agent, played.rewards, 0.9, 1.0, 0.05, 0.05)


def test_the_backward_kernel_refuses_a_gradient_narrower_than_the_hidden_state():
    task, agent, draws = _setup(TASKS["independent"], batch=8, hidden=8)
    played = native.act(agent, task, draws, True)
    narrow = torch.zeros(*played.h.shape[:2], 4)
    with pytest.raises(native.NativeError, match="dv_lstm_backward.*a size is out of range"):
        native._lstm_gradients(played, agent.lstm.weight_hh_l0, narrow)

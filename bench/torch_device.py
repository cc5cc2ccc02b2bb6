"""The device options the bench/*_torch.py scripts share: --device cpu |
cuda | cuda:N (eager PyTorch; on CUDA F32 with TF32 off in matmuls and
convolutions, the precision narrator's cuda:N device keeps) and --autocast
bf16|f16 (CUDA only: torch.autocast, the counterpart of narrator's
cuda:N:bf16 / :f16 devices). Tensors are made on the device by the scripts
themselves (device=...), not through torch.set_default_device, whose
function mode would add Python work to every op of PyTorch's side.
sync() waits for the device so a timer read after it is honest."""
import contextlib

import torch


def add_args(ap):
    ap.add_argument("--device", default="cpu", help="cpu (default), cuda or cuda:N (eager, F32 with TF32 off)")
    ap.add_argument("--autocast", choices=["bf16", "f16"], help="CUDA only: run under torch.autocast in this dtype")


def setup(a):
    """The torch.device of the parsed arguments, configured; exits with a
    message when CUDA is asked for and absent."""
    dev = torch.device(a.device)
    if dev.type == "cuda":
        if not torch.cuda.is_available():
            raise SystemExit(f"--device {a.device}: torch.cuda.is_available() is False here")
        if dev.index is None:
            dev = torch.device("cuda", torch.cuda.current_device())
        torch.cuda.set_device(dev)
        torch.backends.cuda.matmul.allow_tf32 = False
        torch.backends.cudnn.allow_tf32 = False
    elif dev.type != "cpu":
        raise SystemExit(f"--device {a.device}: cpu or cuda[:N]")
    elif a.autocast:
        raise SystemExit("--autocast needs --device cuda (torch's CPU autocast stops at layer_norm here)")
    return dev


def describe(dev, a):
    if dev.type != "cuda":
        return "cpu"
    p = torch.cuda.get_device_properties(dev)
    prec = f"autocast {a.autocast}" if a.autocast else "F32, TF32 off"
    return f"{dev} {p.name} ({p.total_memory / 2**30:.0f} GiB), CUDA {torch.version.cuda}, {prec}"


def sync(dev):
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def autocast(dev, a):
    if not a.autocast:
        return contextlib.nullcontext()
    return torch.autocast(dev.type, dtype=torch.bfloat16 if a.autocast == "bf16" else torch.float16)

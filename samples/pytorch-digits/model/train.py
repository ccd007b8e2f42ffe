"""A small PyTorch MLP on the 8x8 handwritten digits; one learner or several (torch.distributed).

Reads `digits.csv.gz` (64 pixel values 0..16, then the label) from $DATA_DIR and writes
$RESULT_DIR/metrics.jsonl and $RESULT_DIR/model/. After every epoch it saves a checkpoint (model,
optimizer, epoch) to $CHECKPOINT_DIR/checkpoint.pt; started again with one there (a resumed or
requeued run), it prints "resumed from epoch N" and goes on from epoch N+1. Hyperparameters come from the command line
(`--lr 0.01`), else from the HP_* environment a sweep sets, else from $JOB_STATE_DIR/config.json,
else the defaults. With WORLD_SIZE > 1 each learner trains on its share of the data and DDP
all-reduces the gradients (gloo on CPU, nccl on GPU); every rank then writes a checksum of its
parameters to $RESULT_DIR/rank-N.json, which must be the same on all ranks.
"""
from __future__ import annotations

import argparse
import gzip
import hashlib
import json
import os
import sys
import time
from pathlib import Path

DEFAULTS = {"lr": 0.01, "hidden": 64, "epochs": 20, "batch_size": 64, "seed": 0}


def hyperparameters(argv: list[str]) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name, default in DEFAULTS.items():
        parser.add_argument(f"--{name.replace('_', '-')}", dest=name, type=type(default), default=None)
    # Seconds to wait after each epoch: makes a demo (or a test) long enough to halt midway.
    parser.add_argument("--epoch-pause", dest="epoch_pause", type=float, default=0.0)
    args = vars(parser.parse_args(argv))
    pause = args.pop("epoch_pause")
    state = Path(os.environ.get("JOB_STATE_DIR", "")) / "config.json"
    from_file = json.loads(state.read_text()) if os.environ.get("JOB_STATE_DIR") and state.is_file() else {}
    params = {}
    for name, default in DEFAULTS.items():
        value = args[name]
        if value is None:
            value = os.environ.get(f"HP_{name.upper()}", from_file.get(name, default))
        params[name] = type(default)(value)
    return params, pause


def checkpoint_path() -> Path | None:
    folder = os.environ.get("CHECKPOINT_DIR")
    return Path(folder) / "checkpoint.pt" if folder else None


def save_checkpoint(path: Path, epoch: int, model, optimizer, params: dict) -> None:
    """Written aside, then renamed: a run stopped while saving keeps the previous checkpoint."""
    import torch

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    torch.save({"epoch": epoch, "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                "params": params}, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: Path | None, model, optimizer, device) -> int:
    """The last finished epoch of a checkpoint left by an earlier attempt (0 = start afresh)."""
    import torch

    if path is None or not path.is_file():
        return 0
    state = torch.load(path, map_location=device, weights_only=True)
    model.load_state_dict(state["model"])
    optimizer.load_state_dict(state["optimizer"])
    return int(state["epoch"])


def load_digits(data_dir: Path):
    import torch

    path = data_dir / "digits.csv.gz"
    if not path.is_file():
        found = sorted(data_dir.rglob("digits.csv.gz"))
        if not found:
            sys.exit(f"train.py: no digits.csv.gz under DATA_DIR={data_dir}")
        path = found[0]
    with gzip.open(path, "rt") as fh:
        rows = [[int(v) for v in line.split(",")] for line in fh if line.strip()]
    table = torch.tensor(rows, dtype=torch.float32)
    features, labels = table[:, :64] / 16.0, table[:, 64].long()
    # A fixed split, the same on every learner and every run.
    order = torch.randperm(len(labels), generator=torch.Generator().manual_seed(1234))
    cut = int(len(order) * 0.8)
    train, test = order[:cut], order[cut:]
    return features[train], labels[train], features[test], labels[test]


def checksum(model) -> dict:
    import torch

    flat = torch.cat([p.detach().double().cpu().flatten() for p in model.parameters()])
    return {"sha256": hashlib.sha256(flat.numpy().tobytes()).hexdigest(), "sum": float(flat.sum())}


def main(argv: list[str]) -> int:
    params, pause = hyperparameters(argv)
    import torch
    import torch.distributed as dist
    from torch import nn

    world = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    if world > 1:
        torch.set_num_threads(1)  # the learners share the machine's cores
    torch.manual_seed(params["seed"])
    # GPU_COUNT=0 is a run that asked for no GPUs: it must not take one that happens to be visible.
    if torch.cuda.is_available() and os.environ.get("GPU_COUNT", "1") != "0":
        device = torch.device("cuda", rank % torch.cuda.device_count())
        torch.cuda.set_device(device)
    else:
        device = torch.device("cpu")
    if world > 1:
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo", rank=rank, world_size=world)

    data_dir = Path(os.environ.get("DATA_DIR", Path(__file__).resolve().parent.parent / "data"))
    result_dir = Path(os.environ.get("RESULT_DIR", "results"))
    result_dir.mkdir(parents=True, exist_ok=True)
    x_train, y_train, x_test, y_test = (t.to(device) for t in load_digits(data_dir))

    model = nn.Sequential(nn.Linear(64, params["hidden"]), nn.ReLU(), nn.Linear(params["hidden"], 10)).to(device)
    net = nn.parallel.DistributedDataParallel(model) if world > 1 else model
    optimizer = torch.optim.Adam(net.parameters(), lr=params["lr"])
    loss_fn = nn.CrossEntropyLoss()
    print(f"hyperparameters: {json.dumps(params)} device: {device} learners: {world}", flush=True)
    ckpt = checkpoint_path()
    done = load_checkpoint(ckpt, model, optimizer, device)
    if done:
        print(f"resumed from epoch {done} ({ckpt})", flush=True)

    # A resumed run adds to the metrics its earlier attempts wrote.
    metrics = open(result_dir / "metrics.jsonl", "a" if done else "w") if rank == 0 else None
    shard_head: list[int] = []
    started = time.monotonic()
    for epoch in range(done + 1, params["epochs"] + 1):
        net.train()
        # Same permutation on every rank; equal shares so every rank runs the same number of steps.
        order = torch.randperm(len(y_train), generator=torch.Generator().manual_seed(params["seed"] + epoch))
        order = order[: len(order) - len(order) % world][rank::world].to(device)
        shard_head = shard_head or order[:4].tolist()
        total = torch.zeros(2, device=device)
        for start in range(0, len(order), params["batch_size"]):
            batch = order[start : start + params["batch_size"]]
            optimizer.zero_grad()
            loss = loss_fn(net(x_train[batch]), y_train[batch])
            loss.backward()
            optimizer.step()
            total += torch.stack([loss.detach() * len(batch), torch.tensor(float(len(batch)), device=device)])
        if world > 1:
            dist.all_reduce(total)
        net.eval()
        with torch.no_grad():
            accuracy = (model(x_test).argmax(1) == y_test).float().mean().item()
        epoch_loss = (total[0] / total[1]).item()
        print(f"epoch={epoch} loss={epoch_loss:.4f} accuracy={accuracy:.4f}", flush=True)
        if metrics:
            metrics.write(json.dumps({"step": epoch, "epoch": epoch, "loss": round(epoch_loss, 6),
                                      "accuracy": round(accuracy, 6),
                                      "elapsed_s": round(time.monotonic() - started, 3)}) + "\n")
            metrics.flush()
        if rank == 0 and ckpt is not None:
            save_checkpoint(ckpt, epoch, model, optimizer, params)
        if pause:
            time.sleep(pause)
    if metrics:
        metrics.close()
        model_dir = result_dir / "model"
        model_dir.mkdir(exist_ok=True)
        torch.save(model.state_dict(), model_dir / "model.pt")
        (model_dir / "config.json").write_text(json.dumps({**params, "inputs": 64, "classes": 10}) + "\n")
    if world > 1:
        (result_dir / f"rank-{rank}.json").write_text(json.dumps({"rank": rank, "world_size": world,
                                                                        "shard_head": shard_head, **checksum(model)}) + "\n")
        dist.barrier()
        dist.destroy_process_group()
        # Everything is written and closed by now. gloo's background threads can abort a learner
        # during interpreter teardown once its peer has exited ("terminate called without an active
        # exception", SIGABRT), so a finished learner leaves without running that teardown.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

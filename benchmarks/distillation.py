"""Knowledge distillation on MAGIC: a low-bit student trained with and without a float teacher.

One fixed small candidate (``--widths``, relu, no norm) is trained by the local stage's own code
(``build_net`` + calibrate + ``_train``, brevitas QAT with power-of-two scales) at each of
``--bits``, over ``--seeds`` seeds: once with plain cross-entropy and once with the distillation
loss (``--alpha``, ``--temperature``) against a float teacher, same seed, hyper-parameters and
epochs. Teachers: ``twin`` = the student's own float twin (what ``local.distill`` uses),
``wide`` = a larger float MLP (``--teacher-widths``). Prints validation accuracy with/without
and the difference as mean +- std over the seeds.

    .venv/bin/python benchmarks/distillation.py [--bits 3 4] [--seeds 3] [--epochs 20] [--alpha 0.5] [--temperature 2]
        [--widths 8] [--teachers twin wide] [--rewind-epoch 0]
"""

from __future__ import annotations

import argparse
import time
import warnings

import numpy as np

warnings.filterwarnings("ignore")


def train(genome, data, bits, hp, seed, teacher=None, rewind: int = 0):
    """One student (or, with ``bits=None``, one float teacher); ``rewind`` > 0 splits training like a
    local-stage round 0 (``rewind`` epochs, then a fresh Adam for the rest)."""
    import torch

    from codesign.search import local

    torch.manual_seed(seed)
    net = local.build_net(genome, data.n_features, data.n_classes, bits, hp["dropout"])
    local.calibrate(net, data)
    first = min(rewind, hp["epochs"])
    if first:
        local._train(net, data, hp, first, seed, teacher=teacher)
    local._train(net, data, hp, hp["epochs"], seed, start_epoch=first, teacher=teacher)
    return net, local.accuracy(net, data)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--widths", default="8", help="student hidden widths, comma separated")
    ap.add_argument("--teacher-widths", default="64,32", help="the 'wide' teacher's hidden widths")
    ap.add_argument("--teachers", nargs="+", default=["twin", "wide"], choices=["twin", "wide"])
    ap.add_argument("--bits", type=int, nargs="+", default=[3, 4])
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--epochs", type=int, default=20)
    ap.add_argument("--teacher-epochs", type=int, default=20)
    ap.add_argument("--lr", type=float, default=0.01)
    ap.add_argument("--batch", type=int, default=512)
    ap.add_argument("--alpha", type=float, default=0.5)
    ap.add_argument("--temperature", type=float, default=2.0)
    ap.add_argument("--rewind-epoch", type=int, default=0, help="students: the local stage's split schedule (0: off)")
    ap.add_argument("--max-rows", type=int, default=None, help="subsample MAGIC (default: all 19020 rows)")
    args = ap.parse_args()

    import torch

    from codesign.search.data import load_dataset
    from codesign.search.distill import DistillSpec, Teacher, teacher_logits
    from codesign.search.genome import Genome
    from codesign.search.space import DataSpec

    torch.set_num_threads(2)
    data = load_dataset(DataSpec(dataset="magic", val_fraction=0.2, seed=0, max_rows=args.max_rows))

    def mlp(widths: str) -> Genome:
        w = tuple(int(v) for v in widths.split(","))
        return Genome(w, ("relu",) * len(w), ("none",) * len(w))

    student, wide = mlp(args.widths), mlp(args.teacher_widths)
    hp = {"learning_rate": args.lr, "batch_size": args.batch, "l1": 0.0, "dropout": 0.0, "epochs": args.epochs}
    thp = {**hp, "epochs": args.teacher_epochs}
    kd = DistillSpec(args.alpha, args.temperature)
    print(f"MAGIC: {len(data.y_train)} train / {len(data.y_val)} val rows; student {args.widths} relu MLP, "
          f"{args.epochs} epochs, lr {args.lr}, batch {args.batch}; alpha {kd.alpha}, T {kd.temperature}; "
          f"teachers: {', '.join(args.teachers)} ({args.teacher_epochs} float epochs)")  # fmt: skip
    x = torch.from_numpy(data.x_train)
    acc: dict[tuple, list[float]] = {}
    t0 = time.time()
    for seed in range(args.seeds):
        teachers = {}
        for name in args.teachers:
            net, t_acc = train(student if name == "twin" else wide, data, None, thp, seed)
            teachers[name] = Teacher(teacher_logits(net, x), kd, t_acc)
            acc.setdefault(("teacher", name), []).append(t_acc)
        for bits in args.bits:
            acc.setdefault((bits, "none"), []).append(train(student, data, bits, hp, seed, None, args.rewind_epoch)[1])
            for name, teacher in teachers.items():
                acc.setdefault((bits, name), []).append(
                    train(student, data, bits, hp, seed, teacher, args.rewind_epoch)[1]
                )
        print(f"  seed {seed} done ({time.time() - t0:.0f} s)", flush=True)

    def ms(v: list[float]) -> str:
        return f"{np.mean(v):.4f} +- {np.std(v):.4f}"

    print(f"\nvalidation accuracy, mean +- std over {args.seeds} seeds")
    for name in args.teachers:
        print(f"  teacher {name:<5} (float): {ms(acc[('teacher', name)])}")
    print(f"{'bits':>4}  {'teacher':<7}  {'without':>16}  {'with':>16}  {'difference':>16}")
    for bits in args.bits:
        base = np.array(acc[(bits, "none")])
        for name in args.teachers:
            with_ = np.array(acc[(bits, name)])
            print(f"{bits:>4}  {name:<7}  {ms(base):>16}  {ms(with_):>16}  {ms(with_ - base):>16}")
    print(f"total {time.time() - t0:.0f} s")


if __name__ == "__main__":
    main()

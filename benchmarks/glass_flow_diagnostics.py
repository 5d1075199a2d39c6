"""Why training can lower the hot-to-cold flow's ESS: loss, log-det and held-out ESS per step.

    OMP_NUM_THREADS=1 python benchmarks/glass_flow_diagnostics.py --n 36 --t-hot 2.0 \
        --t-cold 1.0 --steps 300

Hot samples of the 2-D ternary Kob–Andersen liquid come from swap Monte Carlo chains; half
of the chains train the flow by reverse KL (E[u_cold(f(z)) − log det]), the other half are
held out. ``--fresh`` trains instead on a stream of fresh configurations (the training
half's chains continue, one sweep per step; :class:`HotChains`), ``--cv`` adds the Stein
control variate, ``--arch probe`` uses the probe flow instead of the per-axis one. Every
``--every`` steps the script prints the minibatch loss, the held-out loss (an unbiased
estimate of KL(q‖p_cold) up to a constant: it can only fall if the map truly improves),
the mean log-det, the mean u_cold(f(z))/N, the Kish ESS fraction of the weights on the
training and on the held-out samples, and the variance of the held-out log-weights.
"""

from __future__ import annotations

import argparse

import torch
from torch import Tensor

from boltzgen.energies.particles import kob_andersen_ternary
from boltzgen.flows.particles import periodic_particle_flow, probe_particle_flow
from boltzgen.metrics import ess_fraction
from boltzgen.samplers.swap_mc import SwapMCConfig, SwapMonteCarlo
from boltzgen.samplers.temperature_map import HotChains, TemperatureMap
from boltzgen.training.temperature_map import train_temperature_map


def hot_samples(args: argparse.Namespace, energy, generator: torch.Generator):
    """Swap-MC samples at T_hot split by chain: (z_train, u_train, z_test, u_test)."""
    hot = energy.at_temperature(args.t_hot)
    x0 = energy.random_starts(args.chains, generator)
    sampler = SwapMonteCarlo(hot, SwapMCConfig(step_size=0.15, swap_probability=args.swap))
    samples = sampler.sample(x0, args.sweeps, generator, n_warmup=args.warmup)
    z = samples.x - energy.box * torch.floor(samples.x / energy.box)
    z = z.reshape(args.sweeps, args.chains, *z.shape[1:])
    u = samples.energies.reshape(args.sweeps, args.chains)
    half = args.chains // 2
    return (
        z[:, :half].reshape(-1, *z.shape[2:]),
        u[:, :half].reshape(-1),
        z[:, half:].reshape(-1, *z.shape[2:]),
        u[:, half:].reshape(-1),
    )


def _weights(sampler: TemperatureMap, z: Tensor, u_hot: Tensor) -> tuple[Tensor, Tensor]:
    """log w and u_cold of the mapped ``z``, in chunks of 64 (the conditioner is O(N²))."""
    with torch.no_grad():
        pairs = zip(z.split(64), u_hot.split(64), strict=True)
        parts = [sampler.log_weights(a, b)[1:] for a, b in pairs]
    return torch.cat([p[0] for p in parts]), torch.cat([p[1] for p in parts])


def report(step: int, batch_loss: float, sampler: TemperatureMap, train, test, n: int) -> None:
    log_w_train, _ = _weights(sampler, *train)
    log_w, u_cold = _weights(sampler, *test)
    logdet = log_w + u_cold - test[1]
    held_out = float((u_cold - logdet).mean())
    print(
        f"{step:5d}  {batch_loss:9.2f}  {held_out:9.2f}  {float(logdet.mean()):8.2f}  "
        f"{float(u_cold.mean()) * sampler.cold.temperature / n:8.4f}  "
        f"{ess_fraction(log_w_train):.4f}  {ess_fraction(log_w):.4f}  {float(log_w.var()):7.2f}",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=36)
    parser.add_argument("--t-hot", type=float, default=2.0)
    parser.add_argument("--t-cold", type=float, default=1.0)
    parser.add_argument("--chains", type=int, default=32)
    parser.add_argument("--sweeps", type=int, default=40)
    parser.add_argument("--warmup", type=int, default=100)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--hidden", type=int, default=32)
    parser.add_argument("--every", type=int, default=25)
    parser.add_argument("--swap", type=float, default=0.2, help="p_swap of the hot chains")
    parser.add_argument("--arch", choices=("axis", "probe"), default="axis")
    parser.add_argument("--fresh", action="store_true", help="train on a stream of fresh samples")
    parser.add_argument("--cv", action="store_true", help="Stein control variate (with --fresh)")
    args = parser.parse_args()
    torch.manual_seed(0)
    generator = torch.Generator().manual_seed(0)
    energy = kob_andersen_ternary(n_particles=args.n, temperature=args.t_cold)
    z_train, u_train, z_test, u_test = hot_samples(args, energy, generator)
    make = probe_particle_flow if args.arch == "probe" else periodic_particle_flow
    flow = make(energy.box, energy.species, 4, hidden=args.hidden).double()
    sampler = TemperatureMap(flow, energy)
    print(f"hot samples: {z_train.shape[0]} train, {z_test.shape[0]} held out")
    print(" step  batch_loss  test_loss  logdet  u_cold/N  ESS_train  ESS_test  var_logw_test")
    report(0, float("nan"), sampler, (z_train, u_train), (z_test, u_test), args.n)
    if args.fresh:
        train_fresh(args, energy, flow, sampler, z_train, (z_train, u_train), (z_test, u_test))
        return
    optimiser = torch.optim.Adam(flow.parameters(), lr=args.lr)
    for step in range(1, args.steps + 1):
        index = torch.randint(z_train.shape[0], (args.batch,), generator=generator)
        x, logdet = flow(z_train[index])
        loss = (energy.energy(x) - logdet).mean()
        optimiser.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        optimiser.step()
        if step % args.every == 0:
            report(
                step, float(loss.detach()), sampler, (z_train, u_train), (z_test, u_test), args.n
            )


def train_fresh(args, energy, flow, sampler, z_train, train, test) -> None:
    """Training on fresh hot configurations, ``--every`` steps per call of the trainer."""
    hot = SwapMonteCarlo(
        energy.at_temperature(args.t_hot), SwapMCConfig(step_size=0.15, swap_probability=args.swap)
    )
    half = args.chains // 2
    stream = HotChains(hot, z_train[-half:].clone())
    generator = torch.Generator().manual_seed(1)
    t_hot = args.t_hot if args.cv else None
    for start in range(0, args.steps, args.every):
        history = train_temperature_map(
            flow, energy, stream, generator, args.every, lr=args.lr, t_hot=t_hot
        )
        batch_loss = sum(history.losses) / len(history.losses)
        report(start + args.every, batch_loss, sampler, train, test, args.n)


if __name__ == "__main__":
    main()

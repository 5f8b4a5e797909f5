"""Host memory of one data-parallel rank building its solver on a synthetic series (BENCHMARKS.md section 7).

``python scripts/bench_shard_memory.py single``: one process (the whole loss);
``... rank1``: rank 1 of 2, in-process, without a process group (the parameter
broadcast is skipped): its loss holds half the points and it releases the cube.
Prints the cube's size and the resident set (/proc/self/statm) after reading
and after building the solver, and the peak (ru_maxrss). Linux only.
"""
import gc, resource, sys, torch
torch.set_num_threads(1)
from hashwfa.training.distributed import DistributedContext, SINGLE_PROCESS
from hashwfa.training.solver_config import SolverConfig, EncodingConfig, NetworkConfig, TrainingConfig
from hashwfa.training.solver import TwoPhaseSolver
from hashwfa.wfa.synthetic.series import synthetic_series
class Rank1(DistributedContext):
    def broadcast_parameters(self, modules): pass
def rss(): return int(open("/proc/self/statm").read().split()[1]) * 4096 / 1e6
obs = synthetic_series(nt=16, ny=96, nx=96, seed=0, noise=1e-3).observation()
gc.collect()
cube = obs.stokes.nbytes / 1e6
r0 = rss()
cfg = SolverConfig(encoding=EncodingConfig(version=1, n_levels=6, max_resolution=16, log2_hashmap_size=10),
                   network=NetworkConfig(n_neurons=16), training=TrainingConfig(epochs_per_phase=1, device="cpu", seed=0))
dist = Rank1(rank=1, world_size=2, backend="gloo") if sys.argv[1] == "rank1" else SINGLE_PROCESS
s = TwoPhaseSolver(obs, cfg, progress=False, dist=dist); gc.collect()
print(f"{sys.argv[1]}: cube {cube:.1f} MB ({obs.n_valid} pts); RSS after reading {r0:.0f} MB, after the solver {rss():.0f} MB, peak {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss/1e3:.0f} MB; loss points {s.loss.n_valid}")

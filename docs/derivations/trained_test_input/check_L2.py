"""L = 2: theory (sources, exact at every width) vs MC of the output statistics."""
import numpy as np, sys, time, theory, mc_out
name = sys.argv[1]; n = int(sys.argv[2]); S = int(sys.argv[3]); seed = int(sys.argv[4])
t0 = time.time()
th = theory.output_L2(name, 0.5)
res = mc_out.combine(mc_out.run(name, n, 2, S, seed), n)
print(f"# {name} L=2 n={n} S={S} seed={seed} ({time.time()-t0:.0f}s)")
for k in mc_out.KEYS:
    if k in th:
        m, se = res[k]
        print(f"{k:5s} MC {m: .5f} +- {se:.5f}   theory {th[k]: .5f}   dev {(m-th[k])/se: .2f} SE")

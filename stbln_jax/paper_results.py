"""The paper's reported numbers (Tables I-II, the text about Figs. 4-5), for side-by-side tables.

All accuracies are top-1 in % on the NTU RGB+D 60 test split, joint stream. Figs. 4 and 5
are plots; only the points the text states are here.
"""

# Benchmark of a dataset name, for the paper's column beside ours.
BENCHMARKS = {'ntu_rgbd/xview': 'CV', 'ntu_rgbd/xsub': 'CS'}

# How the paper writes each mixer's U_p.
MIXER_LABELS = {
    'multiplicative': 'Â⊙M',
    'additive': 'Â+M',
    'symmetric': 'Â+LLᵀ',
    'bilinear': 'U',
}

# Table I: the three mixers, 10 layers, no aggregation.
TABLE1 = {
    'additive': {'CS': 85.29, 'CV': 93.78},
    'symmetric': {'CS': 87.14, 'CV': 93.86},
    'bilinear': {'CS': 85.71, 'CV': 93.80},
}

# Table II: CV accuracy of the first k layers, k = 1..10.
TABLE2_CV = {
    'additive': (77.09, 87.53, 89.90, 90.58, 91.96, 92.89, 93.37, 93.51, 93.73, 93.78),
    'symmetric': (77.16, 87.00, 89.93, 90.80, 92.22, 93.15, 93.37, 93.95, 93.76, 93.86),
    'bilinear': (78.39, 88.14, 89.13, 90.51, 92.15, 92.40, 93.51, 93.74, 93.52, 93.80),
}

# Fig. 4: the best λ of each benchmark and its accuracy (Section VI).
FIG4_BEST = {'CV': (6, 93.06), 'CS': (7, 84.47)}

# Fig. 5: FLOPs (the paper's "G") at λ = 10 and without aggregation (None), and how many
# times cheaper than λ = 10 the text says λ = 6 and λ = 7 are.
FIG5_GFLOPS = {10: 24.59, None: 24.93}
FIG5_SPEEDUP = {6: 2.78, 7: 2.14}


def table2(mixer: str, num_layers: int, benchmark: str | None) -> float | None:
  """Table II's accuracy for a mixer and depth (CV only), or None."""
  values = TABLE2_CV.get(mixer)
  if benchmark != 'CV' or values is None or not 1 <= num_layers <= len(values):
    return None
  return values[num_layers - 1]


def table1(mixer: str, benchmark: str | None) -> float | None:
  return TABLE1.get(mixer, {}).get(benchmark)


def fig4(aggregate_at: int | None, benchmark: str | None) -> float | None:
  """Fig. 4's accuracy where the text states it (the best λ of the benchmark), or None."""
  lam, accuracy = FIG4_BEST.get(benchmark, (None, None))
  return accuracy if aggregate_at is not None and aggregate_at == lam else None

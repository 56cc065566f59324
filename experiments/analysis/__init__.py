"""Reading results: the sweep report (report.py, `run.py report`), the ablation report and its
tables and plots (ablation_report.py, ablation_table.py, ablation_plots.py; Welch intervals and
Holm p in stats.py), scaling-law fits L(N) = E + A N^-alpha (scaling_laws.py) and the paper's
Table 3 reference numbers (paper.py, read from configs/ablations/vaswani2017_table3.json). Sweep
results are read through results.py."""

"""`nnctl sweep`: hyperparameter search with Optuna, trials on Dask (spec.py: the sweep file; driver.py: the
study and the workers; trial.py: one trial on a worker; report.py: what is printed)."""

"""Training: the Trainer and its step (``trainer``), what a checkpoint resumes (``state``), the data
order (``loaders``), losses and the adaptive prior, the schedule, signals, the run folder's lock,
and ``main.train_main`` behind ``train.py``."""

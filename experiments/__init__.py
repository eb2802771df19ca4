"""Entry points (Hydra + MLflow live here, never in ``cosim``).

``python -m experiments.simulate plant=<name>`` runs a plant without twin or attacks.
"""

"""Results: plots and (later) summaries and MLflow logging."""

-- The Prefect server keeps its state in its own database next to the pipeline's.
CREATE DATABASE prefect OWNER mova;

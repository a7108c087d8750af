"""Integrations: pandas / KNIME tables and Dask clusters."""

"""File formats: native HDF5 models, NIR export/import, and datasets (IDX / MNIST)."""

"""Logic of the MNIST workflow, one module per concern, importable without Snakemake.

The Snakemake scripts in ``workflow/scripts`` are thin wrappers around these modules.
Modules that must stay fast to import (``idx``, ``preprocess``, ``report``) never import TensorFlow.
"""

import os

# Set before anything imports TensorFlow: its C++ start-up messages and harmless version
# notices would fill every log (errors that matter still surface as Python exceptions).
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

"""CANS / CANS++: low-light RAW denoising and RAW-to-sRGB in one network (models, data, training,
testing, inference). Importing it checks that the installed PyTorch is recent enough."""
from .requirements import check_torch_version

check_torch_version()

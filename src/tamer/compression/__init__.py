"""compress: quantize (int8 / int4), prune, distill and export models; registers the int8 / int4 artifact loaders."""
from ..artifact import register_format
from .config import CompressConfig
from .loading import compiled, load_quantized
from .report import CompressReport
from .verb import compress

for _fmt in ("int8", "int4"):
    register_format(_fmt, load_quantized)

__all__ = ["CompressConfig", "CompressReport", "compiled", "compress"]

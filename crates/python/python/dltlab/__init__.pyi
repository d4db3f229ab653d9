from . import collapse as collapse
from . import data as data
from . import prune as prune
from . import scaling as scaling
from . import studies as studies
from . import theory as theory

__version__: str

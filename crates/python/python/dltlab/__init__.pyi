from . import scaling as scaling
from . import studies as studies
from . import theory as theory

__version__: str

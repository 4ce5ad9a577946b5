import os
import sys
from collections import deque
# import json  (a comment: not an import)
TEXT = "import pickle"  # a string: not an import either

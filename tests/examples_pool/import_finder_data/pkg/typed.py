from typing import List
import re, math

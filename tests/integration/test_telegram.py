#!/usr/bin/env python3
"""placeholder: the Telegram channel scenarios (issue 13)."""
import sys
sys.exit(77)

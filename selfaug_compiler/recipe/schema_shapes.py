"""Recipe fields for the shapes of chat data (data/shapes.py) and which assistant turns train.

``task.format`` picks how the task's rows are read (``auto``: from the columns);
``train.assistant_turns`` picks which assistant turns of a conversation carry the loss. Both are
``added_field``s in ``schema.py``: recipes that do not set them keep their step ids.
"""

from __future__ import annotations

from typing import Literal

from selfaug_compiler.data.shapes import FORMAT_HELP

TaskFormat = Literal["auto", "prompt_response", "prompt_completion", "alpaca", "messages", "sharegpt"]
AssistantTurns = Literal["all", "last"]

TASK_FORMAT_HELP = FORMAT_HELP
ASSISTANT_TURNS_HELP = ("which assistant turns of a multi-turn conversation are training targets: all (every "
                        "assistant turn, the default) or last (the final reply only; earlier turns are context)")

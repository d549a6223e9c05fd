"""The exception for invalid user input to ``training.generate`` and ``training.finetune``."""


class TrainingInputError(ValueError):
    """An argument, data file or base model cannot be used.

    The message is one line that names the value and the fix, so the command line
    prints it unchanged.
    """

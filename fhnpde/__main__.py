import gc

gc.disable()
from .cli import exit_process, main  # noqa: E402

gc.freeze()
gc.enable()
exit_process(main())

"""mpsb.BundleError: a failure reported by the mpsb runtime."""


class BundleError(Exception):
    """A bundle the runtime refused, or a call it could not carry out.

    Attributes:
        code: the runtime's ``mpsb::Error`` number (``runtime/include/mpsb/result.h``;
            the C API returns the same numbers), e.g. 11 for a bad identifier.
        name: that error's name as the runtime spells it, e.g. ``"bad identifier"``.
        message: the runtime's message, which names the file and the place.
    """

    def __init__(self, code: int, name: str, message: str) -> None:
        super().__init__(code, name, message)
        self.code = code
        self.name = name
        self.message = message

    def __str__(self) -> str:
        return "%s [%s, %d]" % (self.message, self.name, self.code)

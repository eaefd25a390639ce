import os
import sys

import pytest

sys.path.insert(0, os.path.dirname(os.path.dirname(__file__)))
from harness import Instance  # noqa: E402
from sink import Sink  # noqa: E402


@pytest.fixture(scope="session")
def sink():
    server = Sink()
    yield server
    server.close()


@pytest.fixture(scope="session", params=["pipe", "lmtp"])
def mx(sink, request):
    """The private Postfix with tmail, once for each way Postfix hands mail
    to tmail: every test using it runs through both."""
    instance = Instance(sink.port, transport=request.param)
    try:
        instance.setup()
        yield instance
    except Exception:
        print(instance.maillog()[-4000:])
        print(instance.tmail_log()[-4000:])
        raise
    finally:
        instance.teardown()


@pytest.fixture(autouse=True)
def _clean_sink(sink):
    sink.messages.clear()
    sink.reject.clear()

from tests.reliability import test_crash
from tests.reliability.targets import CRM

test_crash.TARGETS = [t for t in CRM if t.name == "bitrix24"]
test_sigkill_at_random_moments_loses_nothing = test_crash.test_sigkill_at_random_moments_loses_nothing

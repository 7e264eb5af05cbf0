from deliveryhub_kit.migrations import run_env
from deliveryhub_web.models import Base

run_env(Base.metadata)

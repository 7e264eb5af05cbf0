from deliveryhub_delivery.models import Base
from deliveryhub_kit.migrations import run_env

run_env(Base.metadata)

from deliveryhub_kit.migrations import run_env
from deliveryhub_orders.models import Base

run_env(Base.metadata)

from tests.report.world import deployment

__all__ = ["deployment"]

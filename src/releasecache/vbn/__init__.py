"""The Visual Behavior Neuropixels facade: :class:`ProjectCache`, typed tables, NWB sessions, streaming."""

__all__ = ["ProjectCache"]


def __getattr__(name: str):  # the facade pulls in pandas and pynwb: import it only when asked
    if name == "ProjectCache":
        # imported on first use: the facade pulls in pandas and pynwb
        from .project import ProjectCache

        return ProjectCache
    raise AttributeError(f"module 'releasecache.vbn' has no attribute {name!r}")

"""Runs Impacket's own wmiquery.py, unchanged, against a resolver that is
not on port 135: PORT first, then wmiquery.py's arguments with the target
written HOST[PORT]. Impacket names the resolver's connection by the target
as given and the objects' by the host alone; both names must find it."""
import os
import runpy
import shutil
import sys

from impacket.dcerpc.v5.dcomrt import DCOMConnection

original_init = DCOMConnection.__init__
original_disconnect = DCOMConnection.disconnect


def init(self, target, *args, **kwargs):
    original_init(self, target, *args, **kwargs)
    self.alias = target.split("[")[0]
    DCOMConnection.PORTMAPS[self.alias] = DCOMConnection.PORTMAPS[target]


def disconnect(self):
    # The alias goes first: Impacket stops its ping timer only when no
    # connection is left.
    DCOMConnection.PORTMAPS.pop(self.alias, None)
    original_disconnect(self)


DCOMConnection.__init__ = init
DCOMConnection.disconnect = disconnect
script = shutil.which("wmiquery.py") or os.path.join(os.path.dirname(sys.executable), "wmiquery.py")
sys.argv = [script] + sys.argv[1:]
runpy.run_path(script, run_name="__main__")

"""What the integration tests share about API keys (the coordinator runs with authentication
on, as everywhere)."""
import os
import subprocess


def operator_key(bin_dir, work_dir, name="admin.key"):
    """A new operator's API key (maas tenant admin-key: read, submit, admin), through a 0600
    file in work_dir, never argv; the CLI reaches Redis through MAAS_REDIS_URL."""
    path = os.path.join(work_dir, name)
    subprocess.run([os.path.join(bin_dir, "maas"), "tenant", "admin-key", "--key-file", path],
                   check=True, capture_output=True)
    with open(path) as f:
        return f.read().strip()

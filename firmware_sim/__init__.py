"""Register simulator: a pure device model rendered through the real vendor protocols over a pty,
TCP, an in-process pyserial URL (``sim://``) or a fake pyusb backend."""

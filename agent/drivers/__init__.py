"""Register drivers: transports (the only modules importing pyserial/pyusb) and device sessions."""

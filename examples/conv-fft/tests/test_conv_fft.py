"""conv-fft's own test suite: conv's conformance kit, in one line."""
import conv.testing


def test_conv_fft_passes_the_conv_kit():
    conv.testing.check_method("fft")


def test_installed_through_the_entry_point():
    method = conv.get_method("fft")
    assert method.distribution is not None, "conv-fft is not installed (pip install ./examples/conv-fft)"
    assert method.distribution.replace("_", "-").lower() == "conv-fft"
    assert not (method.supports_stride or method.supports_dilation or method.pads_itself)


def test_next_fast_len():
    from conv_fft import next_fast_len

    def smooth(m):
        for p in (2, 3, 5):
            while m % p == 0:
                m //= p
        return m == 1

    for n in range(1, 400):
        m = next_fast_len(n)
        assert m >= n and smooth(m)
        assert not any(smooth(k) for k in range(n, m))

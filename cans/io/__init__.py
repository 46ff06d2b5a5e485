"""Files in and out: camera RAW reading (:mod:`.raw`), PNG (:mod:`.png`) and DNG (:mod:`.dng`)
writing, and the atomic writer every result goes through (:mod:`.files`)."""

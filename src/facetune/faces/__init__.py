"""The face side's first step: photos in, face crops out.

`photos` loads images and finds, aligns and crops faces (with `mtcnn`, the CNN detector);
`data` turns FER2013 into the training cache of crops.
"""
